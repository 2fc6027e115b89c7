"""Enrich's models against fixtures written from the documented shapes
(tests/data/enrich/, see ../shared/flinks/README.md §Enrich), decoded through the client
(drift check included) from the emulator serving them verbatim."""

from __future__ import annotations

import datetime as dt
import pathlib
from decimal import Decimal

import msgspec
import pytest

from flinks_async import (
    NONE_DETECTED,
    AttributeDetail,
    Attributes,
    Categorization,
    DecodeError,
    FlinksClient,
)
from flinks_async.testing import Emulator, demo_login_ids

from .conftest import fast_client

pytestmark = pytest.mark.anyio
DATA = pathlib.Path(__file__).parent / "data" / "enrich"


async def _served(emu: Emulator, family: str, name: str, seed: int, **options: object) -> object:
    login = demo_login_ids(1, seed=seed)[0]
    emu.set_login(login, payloads={family: (DATA / name).read_bytes()})
    async with fast_client(emu, **options) as client:
        return await client.fetch(family, login)


def _by_attribute(details: list[AttributeDetail]) -> dict[str | None, AttributeDetail]:
    return {d.attribute: d for d in details}


async def test_a_card_maps_names_to_exact_numbers_strings_and_nulls(emu: Emulator) -> None:
    answer = await _served(emu, "GetIncomeAttributes", "attributes-detail-array.json", 3320)
    assert isinstance(answer, Attributes) and answer.card is not None
    card = answer.card
    assert card.id == "5e115eac-5b1a-4c36-9d7b-1c31a1b9b6a1"
    assert card["average_monthly_employer_income_90_days"] == Decimal("4250.37")
    assert card["sum_employer_income_30_days"] == Decimal(4200)
    assert card["average_monthly_net_cash_flow_90_days"] == Decimal("-312.50")
    assert card["employer_income_frequency"] == "Monthly"
    assert card["balance_trend_simple"] == "CONSISTENT"
    assert card["has_payday_loan"] == "YES"
    assert card["employer_name_1"] == "ACME LOGISTICS INC"
    assert card["sum_government_income_90_days"] == NONE_DETECTED
    assert card.number("sum_government_income_90_days") is None
    assert not card.detected("sum_government_income_90_days")
    assert card["sum_employer_income_2_months_ago"] is None
    assert card.detected("sum_employer_income_previous_month")  # 0 is a result
    assert "AttributesDetail" not in card and "Id" not in card
    # the majority shape: a list, in the card; a lowercase transactionid; slashed dates
    [detail] = answer.details
    assert detail.attribute == "sum_employer_income_30_days"
    first, second = detail.transactions or []
    assert first.transaction_id == "t-1" and second.transaction_id == "t-2"
    assert first.debit is None and second.debit is None and second.balance is None
    assert first.credit == Decimal("2100.00")
    assert first.parsed_date == dt.date(2021, 1, 8)
    assert answer.login is not None


async def test_one_detail_object_with_one_transaction_object(emu: Emulator) -> None:
    answer = await _served(emu, "GetCreditRiskAttributes", "attributes-detail-object.json", 3321)
    assert isinstance(answer, Attributes) and answer.login is None  # Login absent
    [detail] = answer.details
    [tx] = detail.transactions or []
    assert (tx.transaction_id, tx.debit, tx.balance) == ("t-9", Decimal(48), Decimal("-12.40"))


async def test_details_at_the_top_under_either_name(emu: Emulator) -> None:
    answer = await _served(emu, "GetAllAttributes", "attributes-details-top.json", 3322)
    assert isinstance(answer, Attributes)
    ids = [tx.transaction_id for d in answer.details for tx in d.transactions or []]
    assert ids == ["t-3", "t-4"]  # AttributesDetails (a list), AttributeDetails (one)


async def test_categorization_reads_the_lowercase_credit(emu: Emulator) -> None:
    answer = await _served(emu, "GetCategorization", "categorization.json", 3323)
    assert isinstance(answer, Categorization) and answer.transactions
    payroll, groceries = answer.transactions
    assert (payroll.category, payroll.sub_category) == ("Income", "Payroll")
    assert payroll.credit == Decimal("2100.00") and payroll.debit is None
    assert groceries.debit == Decimal("87.75") and groceries.credit is None
    assert payroll.parsed_date == dt.date(2022, 5, 31)
    assert answer.login_id == "5e115eac-5b1a-4c36-9d7b-1c31a1b9b6a1"


async def test_no_drift_from_documented_shapes_and_drift_outside_the_card(emu: Emulator) -> None:
    login = demo_login_ids(1, seed=3324)[0]
    body = (DATA / "attributes-detail-array.json").read_bytes()
    drifted = body.replace(b'"HttpStatusCode": 200', b'"HttpStatusCode": 200, "NewTopKey": 1')
    emu.set_login(login, payloads={"GetIncomeAttributes": drifted})
    async with fast_client(emu, keep_extra=True) as client:
        answer = await client.income_attributes(login)
        assert client.schema_drift == {"Attributes": {"'NewTopKey'": 1}}
    assert answer.extra == {"NewTopKey": 1}  # never dropped
    assert answer.card is not None and len(answer.card.attributes) == 11  # names are data


async def test_raw_is_the_bytes_as_sent(emu: Emulator) -> None:
    login = demo_login_ids(1, seed=3325)[0]
    body = (DATA / "attributes-detail-array.json").read_bytes()
    emu.set_login(login, payloads={"GetIncomeAttributes": body})
    async with fast_client(emu) as client:
        assert await client.raw.income_attributes(login) == body


async def test_unknown_transaction_keys_and_odd_values_are_kept_not_dropped() -> None:
    body = msgspec.json.encode(
        {
            "Card": {
                "Id": "x",
                "is_flag": True,
                "AttributesDetail": {
                    "Attribute": "a",
                    "Extra": 1,
                    "Transactions": [{"TransactionId": "t", "Category": "New"}],
                },
            }
        }
    )
    answer = msgspec.json.decode(body, type=Attributes, strict=False)
    assert answer.card is not None and answer.card.extra == {"is_flag": True}
    [detail] = answer.details
    assert detail.extra == {"Extra": 1}
    assert (detail.transactions or [])[0].extra == {"Category": "New"}
    assert answer.kept_aside() == [
        ("Card", "'is_flag' (bool)"),
        ("AttributeDetail", "'Extra'"),
        ("DetailTransaction", "'Category'"),
    ]


async def test_what_the_breakdown_kept_aside_is_reported_as_drift(emu: Emulator) -> None:
    login = demo_login_ids(1, seed=3326)[0]
    body = msgspec.json.encode(
        {
            "HttpStatusCode": 200,
            "Card": {
                "Id": login,
                "count_nsf_30_days": 2,
                "AttributesDetail": [
                    {
                        "Attribute": "count_nsf_30_days",
                        "Transactions": [{"TransactionId": "t", "NewKey": 1}],
                    }
                ],
            },
        }
    )
    emu.set_login(login, payloads={"GetIncomeAttributes": body})
    async with fast_client(emu) as client:
        answer = await client.income_attributes(login)
        assert client.schema_drift == {"DetailTransaction": {"'NewKey'": 1}}
    assert (answer.details[0].transactions or [])[0].extra == {"NewKey": 1}  # never dropped


def test_a_number_that_is_not_finite_money_is_refused() -> None:
    from flinks_async._models import decoder_for

    with pytest.raises(DecodeError, match="count_nsf_30_days"):
        decoder_for(Attributes).decode(b'{"Card": {"Id": "x", "count_nsf_30_days": 1e999}}')


async def test_the_client_types_attributes(client: FlinksClient) -> None:
    """``client.income_attributes`` is typed ``Attributes`` (mypy reads the row)."""
    login = demo_login_ids(1, seed=3326)[0]
    answer: Attributes = await client.income_attributes(login)
    assert answer.card is not None
