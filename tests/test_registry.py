"""The registry mechanism: duplicates refused, did-you-mean, and third-party plugins via entry points."""
import sys

import pytest

from bench.core.errors import ConfigError
from bench.core.registry import Registry


def test_add_lookup_and_duplicates():
    reg = Registry("widget")
    reg.add("alpha", 1)

    @reg.register("beta")
    def beta():
        return 2

    assert reg.lookup("beta") is beta
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("alpha", 3)
    with pytest.raises(ConfigError, match="unknown widget 'alpah'; did you mean 'alpha'"):
        reg.lookup("alpah")


def test_plugin_module_is_imported_from_its_entry_point(tmp_path, monkeypatch):
    # An installed third-party package: a module plus dist-info declaring the entry point.
    import bench.core.registry

    registry = Registry("widget", entry_point_group="bench.test-widgets")
    monkeypatch.setattr(bench.core.registry, "TEST_TARGET", registry, raising=False)
    (tmp_path / "my_plugin.py").write_text(
        "import bench.core.registry\nbench.core.registry.TEST_TARGET.add('from-plugin', 42)\n")
    info = tmp_path / "my_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[bench.test-widgets]\nmine = my_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_plugin", raising=False)
    assert registry.lookup("from-plugin") == 42


def test_broken_plugin_names_itself(tmp_path, monkeypatch):
    info = tmp_path / "bad_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bad-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[bench.test-broken]\nbad = no_such_module_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="plugin 'bad'.*no_such_module_xyz"):
        Registry("widget", entry_point_group="bench.test-broken").load()

