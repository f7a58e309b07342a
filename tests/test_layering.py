"""The house's rules (tools/house.py measures them from the imports): each module lives in a room,
a room imports only itself and the rooms below it, no module imports its way round in a circle,
every Redis key is built in one module and every offline path in one, no file much over 400 lines."""

from __future__ import annotations

from tools.house import builders, circles, imports, line_counts, upward_imports


def test_no_import_circle():
    assert circles(imports()) == []


def test_every_module_imports_only_its_own_room_and_the_rooms_below():
    assert upward_imports() == []


def test_every_offline_path_is_built_in_one_module():
    assert builders("view=") == builders("version=") == ["sinks.offline.store"]


def test_every_redis_key_is_built_in_one_module():
    assert builders("rillet:") == ["sinks.online.keys"]


def test_no_file_is_much_over_400_lines():
    assert {name: n for name, n in line_counts().items() if n > 450} == {}
