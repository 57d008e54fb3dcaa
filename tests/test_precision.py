"""``--precision auto``: the rule from CPU flags to a precision (``qa.cpu``), the precision resolved and
saved with the index, and an index opened unchanged on a CPU that would have chosen otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import qa.build
import qa.cpu
from helpers_core import HashEncoder, copy_corpus, live_generation, one_line_qaerror, settings_for
from qa.cli import main
from qa.config import Settings
from qa.cpu import choose_precision, cpu_flags, parse_cpu_flags, precision_note, resolve_precision, vector_units
from qa.index import load_index
from qa.manifest import read_manifest, staleness

pytestmark = pytest.mark.unit

EPYC_ZEN4 = {"fpu", "sse4_2", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"}  # this project's machine
SAPPHIRE_RAPIDS = {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16"}
ALDER_LAKE = {"avx2", "fma", "avx_vnni"}  # AVX-VNNI without AVX-512
EPYC_ZEN2 = {"avx2", "fma", "sse4_2"}  # AVX2 only
SKYLAKE_SP = {"avx2", "avx512f", "avx512bw"}  # AVX-512 without VNNI
ARM_NEOVERSE = {"fp", "asimd", "asimddp", "i8mm", "bf16"}  # dot products exist, never measured here


@pytest.mark.parametrize("flags, backend, expected", [
    (EPYC_ZEN4, "auto", "int8"),
    (EPYC_ZEN4, "onnx", "int8"),
    (SAPPHIRE_RAPIDS, "auto", "int8"),
    (ALDER_LAKE, "auto", "int8"),
    ({"amx_int8"}, "auto", "int8"),
    (EPYC_ZEN2, "auto", "fp32"),  # int8 is faster there, but ORT's int8 kernels may saturate without VNNI
    (SKYLAKE_SP, "auto", "fp32"),
    ({"avx512_bf16", "amx_bf16"}, "auto", "fp32"),  # bf16 units alone choose nothing
    (ARM_NEOVERSE, "auto", "fp32"),
    (set(), "auto", "fp32"),  # flags unknown (not Linux)
    (EPYC_ZEN4, "torch", "fp32"),  # the torch backend has no int8
    (SAPPHIRE_RAPIDS, "torch", "fp32"),
])
def test_the_rule_from_flags_to_a_precision_once_int8_meets_the_quality_rule(flags, backend, expected) -> None:
    assert choose_precision(frozenset(flags), backend, meets={"int8"}) == expected
    assert choose_precision(list(flags), backend, meets=("int8",)) == expected  # any iterables


@pytest.mark.parametrize("flags", [EPYC_ZEN4, SAPPHIRE_RAPIDS, ALDER_LAKE, EPYC_ZEN2, SKYLAKE_SP, ARM_NEOVERSE, set()])
def test_as_measured_int8_fails_the_quality_rule_so_auto_is_fp32_on_every_cpu(flags) -> None:
    assert qa.cpu.MEETS_QUALITY_RULE == frozenset()  # int8 lost seed-set answers (README)
    assert choose_precision(flags) == "fp32"
    assert resolve_precision("auto", "auto", flags) == "fp32"
    assert choose_precision(flags, meets=()) == "fp32"


def test_a_precision_given_is_kept_whatever_the_flags() -> None:
    for precision in ("fp32", "bf16", "int8"):
        assert resolve_precision(precision, "auto", EPYC_ZEN2) == precision
        assert resolve_precision(precision, "auto", SAPPHIRE_RAPIDS) == precision


def test_the_note_says_why() -> None:
    assert precision_note("int8", "auto", EPYC_ZEN4) == "int8, chosen by --precision auto: this CPU has AVX512_VNNI"
    assert precision_note("fp32", "torch", EPYC_ZEN4) == "fp32, chosen by --precision auto: the torch backend"
    assert precision_note("fp32", "auto", SAPPHIRE_RAPIDS) == (
        "fp32, chosen by --precision auto: int8 (this CPU has AMX_INT8, AVX512_VNNI, AVX_VNNI) lost answers on "
        "the seed set (see README, The indexing precision)")
    note = precision_note("fp32", "auto", EPYC_ZEN2)
    assert note.startswith("fp32, chosen by --precision auto: no int8 dot-product unit (AMX_INT8, AVX512_VNNI")


X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14
flags\t\t: fpu vme avx2 avx512f avx512_vnni avx512_bf16
bugs\t\t: sysret_ss_attrs

processor\t: 1
flags\t\t: fpu something_else
"""
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes asimddp i8mm bf16
CPU implementer\t: 0x41
"""


def test_flags_are_read_from_cpuinfo_x86_and_arm() -> None:
    assert parse_cpu_flags(X86_CPUINFO) == {"fpu", "vme", "avx2", "avx512f", "avx512_vnni", "avx512_bf16"}
    assert parse_cpu_flags(ARM_CPUINFO) == {"fp", "asimd", "evtstrm", "aes", "asimddp", "i8mm", "bf16"}
    assert parse_cpu_flags("") == frozenset()
    assert parse_cpu_flags("processor : 0\nmodel name : something\n") == frozenset()


def test_the_units_named_beside_a_figure_in_a_fixed_order() -> None:
    assert vector_units(EPYC_ZEN4) == ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]
    assert vector_units(SAPPHIRE_RAPIDS) == ["avx2", "avx512f", "amx_int8", "avx512_vnni", "avx_vnni", "amx_bf16",
                                             "avx512_bf16"]
    assert vector_units(ALDER_LAKE) == ["avx2", "avx_vnni"]
    assert vector_units(EPYC_ZEN2) == ["avx2"]
    assert vector_units(ARM_NEOVERSE) == []


def test_no_cpuinfo_means_no_flags_and_fp32(monkeypatch, tmp_path) -> None:
    """Where /proc/cpuinfo cannot be read (not Linux), the flags are empty and auto is fp32."""
    monkeypatch.setattr(qa.cpu, "CPUINFO", tmp_path / "missing")
    cpu_flags.cache_clear()
    try:
        assert cpu_flags() == frozenset()  # the real reader (the fixture replaced the module's name only)
        assert choose_precision(cpu_flags()) == "fp32"
    finally:
        cpu_flags.cache_clear()  # the next call reads the real file again


def on_cpu(monkeypatch, flags) -> None:
    """Pretend this process runs on a CPU with ``flags``."""
    monkeypatch.setattr(qa.cpu, "cpu_flags", lambda: frozenset(flags))


@pytest.fixture
def int8_passes(monkeypatch) -> None:
    """Pretend int8 met the quality rule (as a later measurement might say), so auto differs by CPU."""
    monkeypatch.setattr(qa.cpu, "MEETS_QUALITY_RULE", frozenset({"int8"}))


def test_auto_is_the_default_and_fp32_here_as_measured(monkeypatch) -> None:
    assert Settings.__dataclass_fields__["precision"].default == "auto"
    on_cpu(monkeypatch, EPYC_ZEN4)
    s = Settings()
    assert (s.precision, s.auto_precision) == ("fp32", True)
    assert s.index_part()["precision"] == "fp32"


def test_settings_resolve_auto_when_made(monkeypatch, tmp_path, int8_passes) -> None:
    on_cpu(monkeypatch, EPYC_ZEN4)
    s = Settings(precision="auto")
    assert (s.precision, s.auto_precision) == ("int8", True)
    assert s.index_part()["precision"] == "int8"  # what the manifest saves
    assert s.replace(backend="torch").precision == "fp32"  # chosen again for the other backend
    assert s.replace(backend="torch").replace(backend="onnx").precision == "int8"
    assert s.replace(k=3).precision == "int8"
    given = Settings(precision="fp32")
    assert (given.precision, given.auto_precision) == ("fp32", False)
    assert given.replace(backend="onnx").precision == "fp32"
    on_cpu(monkeypatch, EPYC_ZEN2)
    assert Settings(precision="auto").precision == "fp32"
    assert s.precision == "int8"  # made settings keep their choice
    assert s.replace(precision="int8").auto_precision is False


def test_a_bad_precision_is_one_line(capsys) -> None:
    msg = one_line_qaerror(Settings(precision="fp16").validate)
    assert msg == "unknown --precision 'fp16': expected one of auto, fp32, bf16, int8"
    with pytest.raises(SystemExit) as e:
        main(["index", "--precision", "fp16"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'fp16'" in err


def test_index_help_says_what_auto_does(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # no line breaks inside the help text
    with pytest.raises(SystemExit):
        main(["index", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--precision {auto,fp32,bf16,int8}" in out
    assert ("auto: the fastest one whose measured quality loss is within the rule (under half a point of Recall@5 "
            "on SQuAD dev, none on the seed set) on this CPU's units (int8 needs AVX512-VNNI, AVX-VNNI or AMX-INT8): "
            "fp32 today") in out
    assert "saved with the index, which keeps it on any CPU" in out
    assert "(default: auto)" in out


class PrecisionEncoder(HashEncoder):
    """The build path without a model, labelled with the precision the build asked for."""

    def __init__(self, precision: str):
        self.precision = precision


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """The precisions the builds of a test loaded an indexing encoder for."""
    asked: list[str] = []

    def indexing_encoder(settings):
        asked.append(settings.precision)
        return PrecisionEncoder(settings.precision)

    monkeypatch.setattr(qa.build, "indexing_encoder", indexing_encoder)
    return asked


def test_auto_is_resolved_and_saved_and_wins_on_another_cpu(monkeypatch, tmp_path, capsys, loads, int8_passes) -> None:
    copy_corpus(tmp_path / "corpus")
    where = ["--corpus", str(tmp_path / "corpus"), "--index", str(tmp_path / "index")]
    on_cpu(monkeypatch, EPYC_ZEN4)
    assert main(["index", "-q", *where]) == 0  # auto, the default
    assert "precision int8, chosen by --precision auto: this CPU has AVX512_VNNI" in capsys.readouterr().err
    assert loads == ["int8"]
    manifest = read_manifest(tmp_path / "index")
    assert manifest["settings"]["precision"] == "int8"
    assert manifest["model"]["precision"] == "int8"
    assert manifest["signature"]["model"].endswith("-int8")
    assert [p.name.rsplit("-", 1)[1] for p in (tmp_path / "index" / "cache").iterdir()] == ["int8"]
    vectors = np.load(live_generation(tmp_path / "index") / "sentences.npy")

    # Another machine, whose CPU auto would give fp32: the index opens as it is, nothing is encoded.
    on_cpu(monkeypatch, EPYC_ZEN2)
    assert main(["index", "-q", *where]) == 0
    assert "is up to date" in capsys.readouterr().err
    assert loads == ["int8"]
    from qa.options import READ, settings_from
    from qa.cli import build_parser

    ask_args = build_parser().parse_args(["ask", *where, "a question"])
    settings = settings_from(ask_args, policy=READ)
    assert (settings.precision, settings.auto_precision) == ("int8", False)
    assert staleness(settings) is None
    index = load_index(settings)
    assert len(index.passages) == manifest["passages"]
    assert np.array_equal(np.load(live_generation(tmp_path / "index") / "sentences.npy"), vectors)

    # A document added there is encoded with the index's precision, not this CPU's choice.
    (tmp_path / "corpus" / "more.txt").write_text("The port of Astrakhan handled 1,700 crates in 2023. "
                                                  "It closed in winter.\n")
    assert main(["index", "-q", *where]) == 0
    capsys.readouterr()
    assert loads == ["int8", "int8"]
    assert read_manifest(tmp_path / "index")["settings"]["precision"] == "int8"

    # Asking for auto here means fp32, which this index is not: one line saying how to rebuild.
    assert main(["ask", "--precision", "auto", *where, "a question"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "was built with --precision int8" in err and "`qa index --precision fp32`" in err


def test_auto_on_a_cpu_without_int8_units_builds_fp32(monkeypatch, tmp_path, capsys, loads, int8_passes) -> None:
    copy_corpus(tmp_path / "corpus")
    on_cpu(monkeypatch, SKYLAKE_SP)
    where = ["--corpus", str(tmp_path / "corpus"), "--index", str(tmp_path / "index")]
    assert main(["index", "-q", *where]) == 0
    assert "precision fp32, chosen by --precision auto: no int8 dot-product unit" in capsys.readouterr().err
    assert loads == ["fp32"]
    assert read_manifest(tmp_path / "index")["settings"]["precision"] == "fp32"
    # an explicit precision is no auto choice: nothing said about it, and it is what is saved
    assert main(["index", "-q", "--precision", "int8", *where]) == 0
    assert "chosen by --precision auto" not in capsys.readouterr().err
    assert loads == ["fp32", "int8"]
    assert read_manifest(tmp_path / "index")["settings"]["precision"] == "int8"


def test_as_measured_qa_index_builds_fp32_here_and_says_why(monkeypatch, tmp_path, capsys, loads) -> None:
    copy_corpus(tmp_path / "corpus")
    on_cpu(monkeypatch, EPYC_ZEN4)
    assert main(["index", "-q", "--corpus", str(tmp_path / "corpus"), "--index", str(tmp_path / "index")]) == 0
    assert ("precision fp32, chosen by --precision auto: int8 (this CPU has AVX512_VNNI) lost answers on the "
            "seed set") in capsys.readouterr().err
    assert loads == ["fp32"]
    assert read_manifest(tmp_path / "index")["settings"]["precision"] == "fp32"


def test_in_process_tests_see_a_cpu_whose_auto_is_fp32(tmp_path) -> None:
    """The autouse fixture: their indexes match real_encoder (fp32) whatever this machine has."""
    assert settings_for(Path(tmp_path), precision="auto").precision == "fp32"
