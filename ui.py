"""The chat web page's entry point: ``python ui.py [--host H] [--port P] [settings options]``.

The same as ``qa serve``; the app itself is ``qa.web``.
"""

import sys

from qa.web import main

if __name__ == "__main__":
    sys.exit(main())
