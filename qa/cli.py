"""The `qa` command: index, ask, eval, serve.

Heavy libraries are imported only by the commands that need them, so `qa ask`
starts fast.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from qa.options import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, GIVEN, READ, UPDATE,
                        SERVE_DESCRIPTION, OneLineParser, add_ray_arguments, add_serve_arguments,
                        add_settings_arguments, settings_from)
from qa.datatypes import QAError

# Exit statuses, the same for every command (documented in `qa --help`).
EXIT_STATUS_HELP = f"""\
exit status (every error is one `error: ...` line on stderr):
  {EXIT_OK}    success; for `ask`, every question was answered (or found not to be answered by the documents)
  {EXIT_FAILED}    a failure that is not the input's fault: an operating-system error (e.g. a full disk, or
       `serve`'s port already in use: it names a free one), or
       answering a question failed unexpectedly (`ask` still answers the other lines of stdin)
  {EXIT_BAD_INPUT}    usage error or bad input: an unknown option or bad value, an empty or too long question
       (as an argument, or as a line of stdin: the other lines are still answered), a missing or
       empty corpus, a damaged index, a malformed question set, an index setting given to `ask` or
       `serve` that differs from the index's (run `qa index` to change it); {EXIT_BAD_INPUT} when {EXIT_FAILED} applies too
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)"""

EVAL_FOLDERS_HELP = """\
where a benchmark (--format squad or beir) is written:
  its documents become a corpus folder: --corpus if given; else, with --index given, the folder
  beside that index named <index name>-corpus (--index runs/squad -> runs/squad-corpus); else
  .qa-eval/<set>/corpus under the current folder, with the index in .qa-eval/<set>/index (<set>:
  the file's name without extension, or the BEIR folder's name).
  A corpus folder holding other files is refused. A run that fails removes the folders it created
  (an interrupted one keeps them, so the index build resumes).

"""


def cmd_index(args: argparse.Namespace) -> int:
    from qa.build import build_index
    from qa.manifest import staleness

    settings = settings_from(args)
    reason = staleness(settings) if not args.rebuild else "rebuild asked for"
    if reason is None:
        print(f"index in {settings.index} is up to date with {settings.corpus}", file=sys.stderr)
        return 0
    if settings.auto_precision:
        from qa.cpu import precision_note

        print(f"precision {precision_note(settings.precision, settings.backend)}", file=sys.stderr)
    if args.ray is not None:
        from qa.distributed import build_index_ray

        build_index_ray(settings, args.ray, workers=args.ray_workers, rebuild=args.rebuild, progress=not args.quiet)
        return 0
    build_index(settings, rebuild=args.rebuild, progress=not args.quiet)
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    """Answer the argument's question, or each non-blank line of stdin. A bad question is
    bad input (exit 2) either way; on stdin the other lines are still answered."""
    from qa.pipeline import ask, check_question, open_engine
    from qa.present import to_json, to_text

    settings = settings_from(args)
    if args.question is not None:
        questions = [check_question(" ".join(args.question))]
    else:
        questions = None
    engine = open_engine(settings, progress=not args.quiet, build=not args.no_build)
    color = sys.stdout.isatty() and not args.json
    status = EXIT_OK
    for question in questions if questions is not None else (line.rstrip("\n") for line in sys.stdin):
        if questions is None and not question.strip():
            continue
        try:
            result = ask(engine, question)
        except QAError as e:
            error_line(e)
            status = EXIT_BAD_INPUT
            continue
        except (KeyboardInterrupt, BrokenPipeError):
            raise
        except Exception as e:  # one question's failure must not lose the other answers
            error_line(f"could not answer the question: {type(e).__name__}: {e}")
            status = max(status, EXIT_FAILED)
            continue
        print(to_json(result) if args.json else to_text(result, color=color) + "\n", flush=True)
    return status


def cmd_eval(args: argparse.Namespace) -> int:
    """``qa eval``; a run that fails (an error, or a non-zero status) removes the corpus and
    index folders it created, and the parent folders it created for them. An interrupted
    run keeps them: an interrupted index build resumes where it stopped."""
    from qa.eval.command import run_eval
    from qa.eval.setup import eval_settings

    # A question set is scored on the index given, with its own settings as `qa ask` would; a
    # benchmark's index is its own, built with the options given.
    settings = settings_from(args, policy=UPDATE if args.format == "jsonl" else GIVEN)
    chosen = eval_settings(args, settings)
    created = [_new_folders(Path(chosen.corpus)), _new_folders(Path(chosen.index))]
    try:
        status = run_eval(args, settings)
    except KeyboardInterrupt:
        raise
    except BaseException:
        _remove_new_folders(created)
        raise
    if status != EXIT_OK:
        _remove_new_folders(created)
    return status


def _new_folders(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first."""
    new = []
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        new.append(path)
        path = path.parent
    return new


def _remove_new_folders(created: list[list[Path]]) -> None:
    """Remove what a failed run created: the folders (with their content) that did not exist
    before it, then the parent folders it made for them if they are empty."""
    for chain in created:
        if chain and chain[0].is_dir() and not chain[0].is_symlink():
            shutil.rmtree(chain[0], ignore_errors=True)
    for chain in created:
        for parent in chain[1:]:
            try:
                parent.rmdir()
            except OSError:
                break


def cmd_serve(args: argparse.Namespace) -> int:
    from qa.web import main as serve

    return serve(args)


def error_line(message) -> None:
    """One ``error: ...`` line on stderr, without control characters (a message can quote a
    file name or other text from the input)."""
    from qa.present import plain

    text = " ".join(plain(str(message)).split("\n"))
    print(f"error: {text}", file=sys.stderr, flush=True)


EXAMPLES = {
    "index": """\
examples:
  qa index --corpus reports/ --index reports-index/    # build or update the index of reports/
  qa index --sentences 3 --overlap 1                   # rebuild the default index with 3-sentence passages""",
    "ask": """\
examples:
  qa ask "How many drones has Russia purchased from Iran since 2022?"
  printf 'What is SEPAM?\\nWho supplies Su-35 jets?\\n' | qa ask --json --mode bm25 -k 3""",
    "serve": """\
examples:
  qa serve                                             # http://127.0.0.1:7860/ (make run)
  qa serve --port 8080 --corpus reports/ --index reports-index/""",
    "eval": """\
examples:
  qa eval questions/seed.jsonl --out eval-out/seed     # our question set, side by side per mode
  qa eval dev-v1.1.json --format squad --split heldout --modes hybrid-rrf --out eval-out/squad""",
}
INDEX_OPTIONS_NOTE = ("The index-shaping options (--sentences, --model, --precision, --faiss, ...) belong to "
                      "`qa index --help`: a question is answered with the settings the index was built with.")


def _command(sub, name: str, summary: str, description: str, epilog: str = ""):
    """A subcommand whose help starts with a one-line description and ends with two examples."""
    return sub.add_parser(name, help=summary, description=description,
                          epilog=epilog + f"exit statuses: see `qa --help`\n\n{EXAMPLES[name]}",
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="qa", description="Ask questions of a folder of documents; "
                                     "answers are quoted from the documents with citations.",
                           epilog=EXIT_STATUS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "index", "build or update the index of the corpus",
                 "Build or update the index of a folder of documents; the options given are saved with it and "
                 "used by every later command that reads it.")
    add_settings_arguments(p, ask=False)
    p.add_argument("--rebuild", action="store_true", help="re-read every document (cached embeddings still reused)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_ray_arguments(p)
    p.set_defaults(func=cmd_index, policy=UPDATE)

    p = _command(sub, "ask", "answer questions (from the argument, or stdin one per line)",
                 "Answer questions from the documents, quoted with citations: the argument, or each line of stdin.",
                 INDEX_OPTIONS_NOTE + "\n\n")
    p.add_argument("question", nargs="*", default=None, help="the question (omit to read questions from stdin)")
    add_settings_arguments(p, index="hidden")
    p.add_argument("--json", action="store_true", help="one JSON object per question")
    p.add_argument("--no-build", action="store_true",
                   help="answer from the existing index as it is, even when the corpus changed (says so)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar when building the index")
    p.set_defaults(func=cmd_ask, policy=READ)

    p = _command(sub, "serve", "start the chat web page",
                 SERVE_DESCRIPTION,
                 INDEX_OPTIONS_NOTE + "\n\n")
    add_serve_arguments(p)
    p.set_defaults(func=cmd_serve, policy=READ)

    from qa.eval.setup import add_eval_arguments
    p = _command(sub, "eval", "score question sets or benchmarks, per retrieval mode",
                 "Score a question set or a benchmark (SQuAD, BEIR) per retrieval mode and answerer, "
                 "through the same path as `qa ask`.", EVAL_FOLDERS_HELP)
    add_eval_arguments(p)
    add_settings_arguments(p)
    add_ray_arguments(p)
    p.set_defaults(func=cmd_eval)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "question", None) == []:
        args.question = None
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except (QAError, OSError) as e:
        if isinstance(e, QAError):  # a full disk or read-only index is a QAError too, but not the input's fault
            error_line(e)
        else:
            where = f": {e.filename}" if getattr(e, "filename", None) else ""
            error_line(f"{e.strerror or e}{where}")
        return EXIT_FAILED if isinstance(e, OSError) else EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
