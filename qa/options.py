"""The command line's shared pieces: the settings as options, the one-line parser, exit statuses.

Used by `qa` (``qa.cli``) and by the chat page (``qa.web``), so neither imports the other.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import fields
from pathlib import Path

from qa.config import (INDEX_FIELDS, LOCATION, AskSettings, IndexSettings, Location, Settings, load_saved,
                       option_flag, resolve_model)
from qa.datatypes import QAError
from qa.manifest import saved_index_settings

EXIT_OK = 0  # done; `qa ask`: every question answered, or found not answered by the documents
EXIT_FAILED = 1  # something went wrong that is not the input's fault (an OSError, an unexpected failure)
EXIT_BAD_INPUT = 2  # usage error or bad input: an unknown option, a bad question, a missing corpus, ...
EXIT_INTERRUPTED = 130  # Ctrl-C

HOST = "127.0.0.1"  # the chat page's address: this machine only
PORT = 7860


READ = "read"  # ask, serve: the index's own settings; a different index-shaping option is an error
UPDATE = "update"  # index, eval of a question set: the options given, else the index's own settings
GIVEN = "given"  # eval of a benchmark: the options given, else the defaults (its index is built with them)
_TYPES = {"Path": Path, "int": int, "float": float, "str": str, "float | None": float}
_METAVARS = {"Path": "DIR", "int": "N", "float": "X", "str": "DIR", "float | None": "X"}  # str: model, reader folders


def add_settings_arguments(parser: argparse.ArgumentParser, *, index: str = "shown", ask: bool = True) -> None:
    """The fields of ``Settings`` as options, generated from the fields: flag, help, choices and the
    default shown in ``--help`` come from each field's metadata (``qa.config.knob``).

    ``index``: "shown" lists the index-shaping options; "hidden" accepts them without listing them
    (``qa ask``: one that differs from the index's is an error saying to run ``qa index``).
    ``ask``: add the per-question options."""
    g = parser.add_argument_group("corpus and index")
    for f in fields(Location):
        _add_option(g, f)
    if index == "shown":
        g = parser.add_argument_group("index (fixed when it is built; saved with it)")
    for f in fields(IndexSettings):
        if f.name not in LOCATION:
            _add_option(g, f, hidden=index == "hidden")
    if ask:
        g = parser.add_argument_group("retrieval and answers")
        for f in fields(AskSettings):
            _add_option(g, f)


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ray [ADDRESS]`` and ``--ray-workers``: read, split and encode on a Ray cluster (``qa.distributed``)."""
    g = parser.add_argument_group("distributed build (needs qa[ray])")
    g.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                   help="read, split and encode on a Ray cluster: the ADDRESS of its head (default: auto, the "
                        "running cluster; with none running, a local Ray on this machine)")
    g.add_argument("--ray-workers", type=int, metavar="N",
                   help="encoder actors, one CPU each (default: every CPU of the cluster)")


def _add_option(group, f, *, hidden: bool = False) -> None:
    meta = f.metadata
    if hidden:
        help_text = argparse.SUPPRESS
    else:
        shown = meta.get("shown")
        default = f.default if shown is None else shown
        notes = ([f"default: {default}"] if default != "" else []) + ([f"env {meta['env']}"] if meta.get("env") else [])
        help_text = meta["help"] + (f" ({'; '.join(notes)})" if notes else "")
    if f.type == "bool":
        group.add_argument(option_flag(f), dest=f.name, action="store_true", default=None, help=help_text)
        return
    metavar = None if meta.get("choices") else _METAVARS[f.type]
    group.add_argument(option_flag(f), dest=f.name, type=_TYPES[f.type], choices=meta.get("choices"),
                       metavar=metavar, help=help_text)


SERVE_DESCRIPTION = "Serve the chat page: ask the documents in a browser, read quoted answers, add documents."


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of serving the chat page (``qa serve``, ``python ui.py``): where to listen, and the settings.
    ``GRADIO_SERVER_NAME`` and ``GRADIO_SERVER_PORT`` set the defaults of --host and --port, as for any Gradio app."""
    host = os.environ.get("GRADIO_SERVER_NAME") or HOST
    port = os.environ.get("GRADIO_SERVER_PORT") or str(PORT)
    parser.add_argument("--host", default=host, help=f"address to bind (default: {host}; 0.0.0.0 for all; "
                        "env GRADIO_SERVER_NAME)")
    parser.add_argument("--port", type=port_number, default=port,  # a string default goes through the type too
                        help=f"port (default: {port}; env GRADIO_SERVER_PORT)")
    add_settings_arguments(parser, index="hidden")


def port_number(text: str) -> int:
    """A TCP port from --port or GRADIO_SERVER_PORT (0: any free port)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0 to 65535): {text!r} (from --port or "
                                         "GRADIO_SERVER_PORT)")
    return port


def settings_from(args: argparse.Namespace, *, policy: str | None = None) -> Settings:
    """The settings of a run, validated: the defaults, then the index's saved index-shaping settings
    (``policy`` READ and UPDATE), then the options given, then the threshold calibration saved.

    READ (``qa ask``, ``qa serve``): an index-shaping option that differs from what the index was
    built with is a QAError saying to run ``qa index``, so a one-off question never rebuilds the
    shared index (an option that changes nothing in it, --batch-size, is taken). UPDATE (``qa index``,
    ``qa eval`` of a question set): the options given change the index. GIVEN (``qa eval`` of a
    benchmark): the saved settings are not read. Without ``policy``, the command's (``args.policy``), else READ."""
    policy = policy or getattr(args, "policy", READ)
    given = {f.name: getattr(args, f.name) for f in fields(Settings) if getattr(args, f.name, None) is not None}
    settings = Settings().replace(**{k: v for k, v in given.items() if k in LOCATION})
    saved = None
    if policy != GIVEN:
        try:
            saved = saved_index_settings(Path(settings.index))
        except QAError:
            if policy == READ:
                raise
            # UPDATE: a damaged index is rebuilt with the options given
    settings = settings.replace(**(saved or {})).replace(**given).validate()
    if saved is not None and policy == READ:  # given values as the settings hold them (auto resolved)
        _check_same_index(settings, saved, {k: getattr(settings, k) for k in given if k in INDEX_FIELDS})
    return load_saved(settings)


def _check_same_index(settings: Settings, saved: dict, given: dict) -> None:
    """QAError when an index-shaping option given differs from what the index was built with."""
    defaults = Settings()
    flags = {f.name: f for f in fields(Settings)}
    changed = [name for name, value in given.items() if flags[name].metadata.get("rebuilds", True)
               and not _same(name, value, saved.get(name, getattr(defaults, name)))]
    if not changed:
        return
    was = ", ".join(_shown(flags[n], saved.get(n, getattr(defaults, n))) for n in changed)
    want = " ".join(_shown(flags[n], given[n]) for n in changed)
    raise QAError(f"the index in {settings.index} was built with {was}; a question cannot change it: run "
                  f"`qa index {want}` to rebuild it (every later question then uses it)")


def _same(name: str, a, b) -> bool:
    if name == "model":
        return Path(resolve_model(a)).resolve() == Path(resolve_model(b)).resolve()
    return a == b


def _shown(f, value) -> str:
    if f.type == "bool":
        return option_flag(f) if value else f"no {option_flag(f)}"
    return f"{option_flag(f)} {value}"


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error."""

    def error(self, message: str):
        from qa.present import plain

        self.exit(EXIT_BAD_INPUT, f"error: {' '.join(plain(message).split(chr(10)))} (see `{self.prog} --help`)\n")
