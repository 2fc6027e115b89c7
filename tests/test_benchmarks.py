"""Smoke test: every benchmark runs end to end at tiny sizes. No timing is asserted."""

from __future__ import annotations

import gc
import pathlib

import pytest

pytest.importorskip("orjson")
pytest.importorskip("pydantic")
pytest.importorskip("httpx")

from benchmarks import __main__ as main_module
from benchmarks import (
    attack,
    blocking,
    bulk_disk,
    capacity,
    coordination,
    decoding,
    distributed,
    fanout,
    looplag,
    memory,
    percall,
    ratelimit,
    transport,
)

pytestmark = pytest.mark.anyio


async def test_attack_runs() -> None:
    runs = await attack.run(rounds=1, calls=10)
    assert [r.mode for r in runs] == ["quiet", "attack", "forged only"]
    assert "p99 / quiet's" in attack.markdown(runs)


def test_decoding_runs() -> None:
    results = decoding.run((20_000,), rounds=1)
    assert {r.kind for r in results} == {"Investments", "GetAccountsDetail"}
    assert "pydantic v2" in decoding.markdown(results)


async def test_the_plot_draws_every_section_measured(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ``--only`` run keeps the other sections' figures: the plot has all three panels."""
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(main_module, "PLOT", tmp_path / "plot.png")
    monkeypatch.setattr(main_module, "PLOT_DATA", tmp_path / "plot.json")
    main_module._save_plot_data(decoding.run((20_000,), rounds=1), None, None)
    tr = await transport.run((1,), logins=10, rounds=1)
    cap = await capacity.run((20,), poll_interval=0.2, hold=0.2, ramp_rate=2000)
    data = main_module._save_plot_data(None, tr, [cap])
    assert set(data) == {"decoding", "transport", "capacity"}
    main_module._plot(data)
    assert (tmp_path / "plot.png").read_bytes().startswith(b"\x89PNG")


async def test_transport_runs() -> None:
    results = await transport.run((1, 4), logins=20, rounds=1)
    assert "bare aiohttp" in transport.markdown(results)
    overhead = await transport.run((4,), logins=20, rounds=1, contenders=transport.OVERHEAD)
    assert "httpx" not in transport.markdown(overhead)


async def test_blocking_runs() -> None:
    callbacks = list(gc.callbacks)
    result = await blocking.run(calls=5, logins=40, rounds=1)
    assert gc.callbacks == callbacks  # its collection counter is gone
    assert set(result.throughput) == set(blocking.THREADED) == {"threads", "pool", "async"}
    assert all(len(v.values) == 1 for v in result.collections.values())
    text = blocking.markdown(result)
    assert "threads" in text and "ThreadPoolExecutor.map" in text and "(target ≥ 90%)" in text


async def test_enrich_runs() -> None:
    from benchmarks import enrich

    result = await enrich.run(logins=10, concurrency=5, rounds=1)
    assert set(result.requests_per_login.values()) == {7.0}  # the same exchanges
    assert "three calls by hand" in enrich.markdown(result)


async def test_percall_runs() -> None:
    result = await percall.measure("asyncio", logins=20, rounds=1)
    assert set(result.cpu_per_login) == {"floor", "client.investments()"}
    assert "above the floor" in percall.markdown([result])


async def test_capacity_runs() -> None:
    thresholds = gc.get_threshold()
    result = await capacity.run(
        (60, 120), poll_interval=0.2, hold=0.3, ramp_rate=2000, gc_mode="tuned"
    )
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0  # put back
    assert [lv.in_flight for lv in result.levels] == [60, 120] and result.failed == 0
    assert all(lv.polls_per_s > 0 for lv in result.levels) and result.gc_objects_per_login > 0
    assert result.full_gc_pause > 0 and result.full_gc_every > 0
    table = capacity.markdown([result])
    assert "polls/s at the server" in table and "a full GC at 120: pause / every" in table


async def test_coordination_runs() -> None:
    result = await coordination.run(logins=20, concurrency=4, rounds=1)
    assert result is None or "Redis (rate limit" in coordination.markdown(result)


async def test_distributed_runs() -> None:
    result = await distributed.run(logins=30, workers=(1,))
    assert result is None or "vs 1 worker" in distributed.markdown(result)


async def test_fanout_runs() -> None:
    result = await fanout.run(logins=60, concurrency=20, poll_interval=0.01)
    assert result.lost == 0 and result.duplicated == 0 and result.ok == 60
    assert result.peak_sockets <= 20


async def test_looplag_runs() -> None:
    results = await looplag.run(sizes=(1_500_000,), logins=2, rounds=1)
    assert len(results) == len(looplag.VARIANTS)
    assert "vs one go" in looplag.markdown(results)


async def test_bulk_disk_runs() -> None:
    results = await bulk_disk.run(logins=30, naive_logins=5)
    assert results[0].logins == 30 and results[0].bytes > 0


async def test_ratelimit_runs() -> None:
    results = await ratelimit.run((0.0,), logins=40)
    assert set(results[0].runs) == {"ours", "v0.1 start-stamped"}
    assert "busiest 1 s window" in ratelimit.markdown(results)


async def test_memory_runs() -> None:
    results = await memory.run(size=1_000_000, logins=4)
    assert len(results) == 4 and all(r.ok == 4 for r in results)
    assert "tracemalloc" in memory.markdown(results, 1_000_000, 4)
