"""The item plane's topics are named per worker group (``<group>.item-deltas``, ``<group>.item-results``, like
``<group>.state``), so two groups on one cluster never mix their deltas; an explicit name still wins, and
``streamrec topics create`` / ``streamrec items`` follow the group they are given."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from streamrec import cli
from streamrec.consumers.itemcache import DeltaEmitter, ItemCacheFollower
from streamrec.models.serving.itemplane import ItemPlane
from streamrec.stream.settings import Settings
from streamrec.stream.topics import topic_specs


class _Log:
    def bind(self, **_: Any) -> _Log:
        return self


def _item_topics(s: Settings, group: str | None = None) -> set[str]:
    return {t.name for t in topic_specs(s, group) if "item" in t.name and t.name != s.items_topic}


def test_two_groups_get_different_item_topics() -> None:
    a, b = Settings().replace(group="shop-a"), Settings().replace(group="shop-b")
    assert (a.item_deltas_name(), a.item_results_name()) == ("shop-a.item-deltas", "shop-a.item-results")
    assert _item_topics(a) == {"shop-a.item-deltas", "shop-a.items.state", "shop-a.item-results"}
    assert not _item_topics(a) & _item_topics(b)
    assert _item_topics(Settings(), "shop-b") == _item_topics(b)      # topic_specs(settings, group)
    plane = ItemPlane()
    assert DeltaEmitter(a, plane).topic == "shop-a.item-deltas"
    assert ItemCacheFollower(b, plane, _Log(), consumer_factory=lambda: None).topic == "shop-b.item-results"


def test_an_explicit_name_wins() -> None:
    s = Settings.from_env({"STREAMREC_GROUP": "shop-a", "STREAMREC_ITEM_DELTAS_TOPIC": "deltas",
                           "STREAMREC_ITEM_RESULTS_TOPIC": "results"})
    assert (s.item_deltas_name(), s.item_results_name()) == ("deltas", "results")
    assert (s.item_deltas_name("other"), s.item_results_name("other")) == ("deltas", "results")
    assert {"deltas", "results", "shop-a.items.state"} <= {t.name for t in topic_specs(s)}


def test_topics_create_and_items_follow_the_group(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[set[str]] = []
    monkeypatch.setattr("streamrec.cmd_broker.ensure_topics",
                        lambda s: created.append({t.name for t in topic_specs(s)}) or {})
    result = CliRunner().invoke(cli.app, ["topics", "create", "--group", "shop-a"])
    assert result.exit_code == 0, result.output
    assert {"shop-a.item-deltas", "shop-a.item-results", "shop-a.items.state"} <= created[-1]

    owners: list[Settings] = []

    class Stop(Exception):
        pass

    def fake_owner(settings: Settings, *_: Any) -> None:
        owners.append(settings)
        raise Stop

    monkeypatch.setattr("streamrec.consumers.itemplane.ItemOwner", fake_owner)
    result = CliRunner().invoke(cli.app, ["items", "--group", "shop-b"])
    assert isinstance(result.exception, Stop), result.output
    assert (owners[-1].item_deltas_name(), owners[-1].item_results_name(), owners[-1].item_group()) == (
        "shop-b.item-deltas", "shop-b.item-results", "shop-b.items")
