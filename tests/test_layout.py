"""The layout's shared helpers: the one TOML writer round-trips through tomllib, the import-cycle check
finds a cycle made only of function-level imports (and the project has none), the free port is free."""
from __future__ import annotations

import math
import socket
import subprocess
import sys
import tomllib

from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.ports import free_port
from stream.core.toml_writer import dumps, toml_value, write_toml

_text = st.text(max_size=20)  # any code point but surrogates: quotes, backslashes, newlines, NUL, DEL, emoji
_scalars = (st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False) | st.booleans() | _text)
_values = _scalars | st.lists(_scalars, max_size=4) | st.dictionaries(_text, _scalars, max_size=3)


@settings(max_examples=300, deadline=None)
@given(doc=st.dictionaries(_text, st.dictionaries(_text, _values, max_size=5) | _values, max_size=5))
def test_toml_writer_round_trips_any_document(doc):
    assert tomllib.loads(dumps(doc)) == doc


def test_toml_writer_special_floats_and_tuples(tmp_path):
    path = write_toml(tmp_path / "x.toml", {"a": {"nan": math.nan, "inf": math.inf, "ninf": -math.inf,
                                                  "t": (1, "two"), "p": tmp_path}})
    back = tomllib.loads(path.read_text(encoding="utf-8"))["a"]
    assert math.isnan(back["nan"]) and back["inf"] == math.inf and back["ninf"] == -math.inf
    assert back["t"] == [1, "two"] and back["p"] == str(tmp_path)
    assert toml_value("tab\there") == '"tab\there"'  # a tab stays raw, as TOML allows (bundle.toml bytes unchanged)
    assert toml_value('a"b\\c\n') == '"a\\"b\\\\c\\n"'


def _write_package(root, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_cycle_check_sees_imports_inside_functions(tmp_path):
    """engines.capabilities <-> stream.core.flow_cuda was such a cycle: one side imported inside a function."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import grimp
        from import_cycles import module_cycles
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    _write_package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "def f():\n    from pkg import c\n    return c\n",
        "pkg/c.py": "import pkg.a\n",
        "pkg/d.py": "from pkg import a\n",  # imports into the cycle, is not part of it
    })
    sys.path.insert(0, str(tmp_path))
    try:
        graph = grimp.build_graph("pkg", cache_dir=None)
    finally:
        sys.path.remove(str(tmp_path))
    assert module_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_project_has_no_import_cycle():
    proc = subprocess.run([sys.executable, "scripts/import_cycles.py"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("0 import cycle(s) among ")


def test_free_port_can_be_bound():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # raises if it was taken
        assert s.getsockname()[1] == port
