"""Decoding: /Investments and /GetAccountsDetail payloads of 100 KB to 50 MB.

Contenders, alternated within each round on the same bytes:

* ``flinks-async``: the client's decode of a 200 body in one go (``ModelDecoder``: the
  shared ``msgspec.json.Decoder`` of the model, plus our error mapping and money check);
* ``flinks-async, in slices``: what the client runs on a body of 1 MiB or more: the same
  value, decoded a piece at a time with a turn of the event loop at least every 2 ms
  (:mod:`flinks_async._slices`; run here without a loop, each turn a bare yield);
* ``flinks-async, keep_extra=True``: the same, plus the generic second read that keeps
  unknown keys on ``.extra`` and checks for schema drift (also what ``strict_schema=True``
  and the first 20 answers per model cost);
* ``bare msgspec``: ``msgspec.json.decode(body, type=Model)`` into the same Structs
  (the floor: any gap is overhead of ours);
* ``msgspec, float money (v0.1)``: the same models with ``float`` where ours have
  ``Decimal`` (what exact money costs);
* ``msgspec, money kept as JSON text (msgspec.Raw)``: the same models with ``msgspec.Raw``
  where ours have ``Decimal``: what "lazy money" (a ``Decimal`` built on attribute access
  from the digits kept) would cost to decode, a design not adopted (docs/models.md);
* ``json.loads`` (dicts), ``orjson.loads`` (dicts), ``json.loads`` + dataclasses,
  and pydantic v2 ``model_validate_json`` into equivalent models.

Peak memory is the tracemalloc peak of one decode, measured in a separate pass.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from flinks_async import AccountsDetail, Investments
from flinks_async._decoding import ModelDecoder
from flinks_async._schema import SchemaCheck
from flinks_async.testing import accounts_payload, investments_payload

from . import _alt_models as alt
from ._common import Stat, drive, table

SIZES = (100_000, 1_000_000, 10_000_000, 50_000_000)
QUICK_SIZES = (100_000, 1_000_000, 10_000_000)


def contenders(kind: str) -> dict[str, Callable[[bytes], Any]]:
    model: type[Any] = Investments if kind == "Investments" else AccountsDetail
    pmodel: Any = alt.PInvestments if kind == "Investments" else alt.PAccountsDetail
    to_dc = alt.investments_dataclasses if kind == "Investments" else alt.accounts_dataclasses
    ours = ModelDecoder.of(model, raw=False)
    floats = msgspec.json.Decoder(alt.float_twin(model), strict=False)
    raws = msgspec.json.Decoder(alt.raw_twin(model), strict=False)
    extra = SchemaCheck(strict=False, keep_extra=True, hooks=()).wrap(ours, model, kind, None)
    return {
        "flinks-async": ours,
        "flinks-async, in slices": lambda b: drive(ours.in_slices(b)),
        "flinks-async, keep_extra=True": extra,
        "bare msgspec": lambda b: msgspec.json.decode(b, type=model),
        "msgspec, float money (v0.1)": floats.decode,
        "msgspec, money kept as JSON text (msgspec.Raw)": raws.decode,
        "json.loads": json.loads,
        "orjson.loads": orjson.loads,
        "json + dataclasses": lambda b: to_dc(json.loads(b)),
        "pydantic v2": pmodel.model_validate_json,
    }


@dataclasses.dataclass
class DecodeResult:
    kind: str
    size: int
    times: dict[str, Stat]
    peak_memory: dict[str, int]


def _time_once(fn: Callable[[bytes], Any], body: bytes) -> float:
    gc.collect()
    start = time.perf_counter()
    fn(body)
    return time.perf_counter() - start


def _peak(fn: Callable[[bytes], Any], body: bytes) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        value = fn(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del value
    return peak


def run(sizes: tuple[int, ...] = SIZES, rounds: int = 5) -> list[DecodeResult]:
    out = []
    for kind in ("Investments", "GetAccountsDetail"):
        fns = contenders(kind)
        for size in sizes:
            body = investments_payload(size) if kind == "Investments" else accounts_payload(size)
            n = rounds if size < 20_000_000 else max(3, rounds // 2)
            times: dict[str, list[float]] = {k: [] for k in fns}
            for _ in range(n):
                for name, fn in fns.items():
                    times[name].append(_time_once(fn, body))
            peaks = {name: _peak(fn, body) for name, fn in fns.items()}
            out.append(DecodeResult(kind, len(body), {k: Stat(v) for k, v in times.items()}, peaks))
    return out


def markdown(results: list[DecodeResult]) -> str:
    rows = []
    for r in results:
        ours = r.times["flinks-async"].median
        for name, stat in r.times.items():
            ratio = "1.00" if name == "flinks-async" else f"{stat.median / ours:.2f}x"
            rows.append(
                (
                    r.kind,
                    f"{r.size / 1e6:.1f} MB",
                    name,
                    stat.fmt(),
                    f"{r.peak_memory[name] / 1e6:.1f} MB",
                    ratio,
                )
            )
    return table(
        [
            "payload",
            "size",
            "decoder",
            "time median (min–max)",
            "peak memory",
            "its time ÷ flinks-async",
        ],
        rows,
    )
