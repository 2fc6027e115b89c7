"""Typed models of Flinks Enrich answers: attributes (a :class:`Card`) and categorization.

The conventions of :mod:`flinks_async._models` hold (snake_case, every field optional,
money exact). What is particular to Enrich:

* **A card's attributes are open**: about 2,500 consumer and 1,800 business names, more
  every year. :class:`Card` keeps them all in ``attributes``, a mapping from the name as
  Flinks sent it to its value: a number is an exact, finite :class:`~decimal.Decimal`
  (``0``, ``-1250.75``; the money rule, :mod:`flinks_async._money`), a string stays the
  string (``"Monthly"``, ``"CONSISTENT"``, ``"YES"``, an employer's name) and ``null`` is
  ``None``. A value that is none of these (``true``, an object) is kept in
  ``card.extra``, never dropped. A card's attribute names are data, not schema: they are
  never reported as drift.
* **``NONE_DETECTED`` stays the string** :data:`NONE_DETECTED` (our choice): a sentinel
  object would not survive JSON, a ``None`` would mix "nothing found" with "not
  computed" (``null``), and Flinks itself sends ``0`` for some empty results. Use
  :meth:`Card.number` for "the number, or ``None``" and :meth:`Card.detected`.
* **``AttributesDetail`` in every documented variant**: an array of ``{Attribute,
  Transactions}`` or one such object, ``Transactions`` a list or one object, inside
  ``Card`` (``AttributesDetail``) or at the top (``AttributesDetails`` /
  ``AttributeDetails``); transaction keys in any case (``transactionid``), dates with
  slashes (kept as sent; :attr:`DetailTransaction.parsed_date` reads them), ``Debit`` /
  ``Credit`` null or absent, ``Login`` absent. All of them end in
  :attr:`Attributes.details`. A key of a detail or transaction the model does not map
  is kept in its ``.extra`` and reported as drift (:meth:`Attributes.kept_aside`).
* **Categorization**: transactions with ``category`` and ``sub_category``; Flinks' own
  example has one lowercase ``credit``, read as ``Credit``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

import msgspec

from ._errors import DecodeError
from ._models import Transaction, _Answer, _Model
from ._money import MAX_EXPONENT, check_money

__all__ = [
    "NONE_DETECTED",
    "AttributeCategory",
    "AttributeDetail",
    "AttributeInfo",
    "AttributeValue",
    "Attributes",
    "Card",
    "Categorization",
    "CategorizedTransaction",
    "DetailTransaction",
]

#: what Flinks sends for an attribute where nothing was found (kept as this string)
NONE_DETECTED = "NONE_DETECTED"
#: the value of one attribute: an exact number, a string, or ``None`` (null)
AttributeValue = Decimal | str | None
_LIMIT = Decimal(10) ** (MAX_EXPONENT + 12)


class DetailTransaction(Transaction):
    """A transaction behind an attribute (``AttributesDetail``): a :class:`Transaction`
    named by ``transaction_id`` (``TransactionId``, or ``transactionid``) in
    ``account_id``; ``date`` as sent (``"2021/01/08"``)."""

    transaction_id: str | None = None
    account_id: str | None = None


class AttributeDetail(_Model):
    """The transactions behind one attribute."""

    attribute: str | None = None
    transactions: list[DetailTransaction] | None = None


class Card(_Model):
    """The attributes of one login: ``id`` (the loginId in Flinks' docs) and
    ``attributes`` (name -> :data:`AttributeValue`); ``card["name"]`` reads one."""

    id: str | None = None
    attributes: dict[str, AttributeValue] = msgspec.field(default_factory=dict)
    attributes_detail: list[AttributeDetail] | None = None

    def __getitem__(self, name: str) -> AttributeValue:
        return self.attributes[name]

    def __contains__(self, name: object) -> bool:
        return name in self.attributes

    def number(self, name: str) -> Decimal | None:
        """The attribute's number; ``None`` when it is absent, null or a string
        (``NONE_DETECTED``, ``"Monthly"``)."""
        value = self.attributes.get(name)
        return value if isinstance(value, Decimal) else None

    def detected(self, name: str) -> bool:
        """Whether the attribute holds something: present, not null, not ``NONE_DETECTED``."""
        return self.attributes.get(name) not in (None, NONE_DETECTED)


class Attributes(_Answer):
    """The ``200`` of an attributes endpoint (``GetIncomeAttributes``... or the custom
    ``POST``): the :attr:`card`, and every ``AttributesDetail`` variant in
    :attr:`details`. ``login`` may be absent."""

    __data_fields__ = ("card_data",)
    #: numbers of the untyped card decode exactly (see ``decoder_for``)
    __float_hook__: ClassVar[Any] = Decimal

    #: the ``Card`` object as sent; read :attr:`card`
    card_data: Any = msgspec.field(default=None, name="Card")
    attributes_details: Any = msgspec.field(default=None, name="AttributesDetails")
    attribute_details: Any = msgspec.field(default=None, name="AttributeDetails")

    def __post_init__(self) -> None:
        if isinstance(self.card_data, dict):
            self.card_data = card_from(self.card_data)
        for name in ("attributes_details", "attribute_details"):
            value = getattr(self, name)
            if value is not None and not _built(value):
                setattr(self, name, details_from(value))

    @property
    def card(self) -> Card | None:
        """The card (``None`` when the answer had none)."""
        return self.card_data if isinstance(self.card_data, Card) else None

    def kept_aside(self) -> list[tuple[str, str]]:
        """What the card and its breakdown held that their models do not map (kept in
        ``.extra``, never dropped), as drift findings: ``("DetailTransaction",
        "'Category'")``. The client reports them as drift on every answer (a card's
        attribute names are data: never)."""
        odd = (self.card and self.card.extra) or {}
        found = [("Card", f"{k!r} ({type(v).__name__})") for k, v in odd.items()]
        for detail in self.details:
            found += [("AttributeDetail", repr(k)) for k in detail.extra or ()]
            for tx in detail.transactions or ():
                found += [("DetailTransaction", repr(k)) for k in tx.extra or ()]
        return found

    @property
    def details(self) -> list[AttributeDetail]:
        """Every ``AttributesDetail`` of the answer, inside the card or at the top."""
        card = self.card
        found = list(card.attributes_detail or ()) if card is not None else []
        for top in (self.attributes_details, self.attribute_details):
            if isinstance(top, list):
                found.extend(d for d in top if isinstance(d, AttributeDetail))
        return found


def _built(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, AttributeDetail) for v in value)


_DETAIL_KEY = "AttributesDetail"
_TRANSACTION_KEYS = {
    f.encode_name.lower(): f.encode_name for f in msgspec.structs.fields(DetailTransaction)
}
_TRANSACTION_KEYS.pop("__flinks_extra__")


def card_from(raw: Mapping[str, Any]) -> Card:
    """A :class:`Card` from its JSON object (numbers already read as ``Decimal``)."""
    attributes: dict[str, AttributeValue] = {}
    extra: dict[str, Any] = {}
    card_id: str | None = None
    detail: list[AttributeDetail] | None = None
    for key, value in raw.items():
        if key == "Id":
            card_id = None if value is None else str(value)
        elif key.lower() == _DETAIL_KEY.lower():
            detail = details_from(value)
        else:
            number = _attribute_value(key, value)
            if number is _MISFIT:
                extra[key] = value
            else:
                attributes[key] = number
    return Card(id=card_id, attributes=attributes, attributes_detail=detail, extra=extra or None)


_MISFIT: Any = object()


def _attribute_value(name: str, value: Any) -> Any:
    """One attribute's value: Decimal, str, None, or ``_MISFIT`` (kept in ``.extra``)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return _MISFIT
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):  # a decode without the float hook: its shortest repr
        value = Decimal(repr(value))
    if isinstance(value, Decimal):
        if not value.is_finite() or abs(value) >= _LIMIT:
            raise DecodeError(
                f"Card attribute {name!r} is not a finite number of sane size",
                field=f"Card.{name}",
            )
        return value
    return _MISFIT


def details_from(value: Any) -> list[AttributeDetail]:
    """Every documented form of ``AttributesDetail`` as a list of :class:`AttributeDetail`."""
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if not isinstance(item, dict):
            continue
        known, extra = {}, {}
        for key, one in item.items():
            if key.lower() == "attribute":
                known["Attribute"] = one
            elif key.lower() == "transactions":
                known["Transactions"] = [_transaction(t) for t in _listed(one)]
            else:
                extra[key] = one
        detail = msgspec.convert(known, AttributeDetail, strict=False)
        detail.extra = extra or None
        check_money(detail, AttributeDetail)
        out.append(detail)
    return out


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, dict)]


def _transaction(raw: dict[str, Any]) -> DetailTransaction:
    known: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in raw.items():
        canonical = _TRANSACTION_KEYS.get(key.lower())
        if canonical is None:
            extra[key] = value
        else:
            known[canonical] = value
    try:
        tx = msgspec.convert(known, DetailTransaction, strict=False)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"AttributesDetail transaction does not fit: {exc}") from None
    tx.extra = extra or None
    return tx


class CategorizedTransaction(DetailTransaction):
    """A transaction of ``GetCategorization``: ``category`` / ``sub_category``; ``debit``
    or ``credit`` (omitted rather than null in Flinks' example; a lowercase ``credit`` or
    ``debit`` is read as ``Credit`` / ``Debit``); ``date`` as sent (``"2022-05-31"``)."""

    category: str | None = None
    sub_category: str | None = None
    credit_lowercase: Decimal | None = msgspec.field(default=None, name="credit")
    debit_lowercase: Decimal | None = msgspec.field(default=None, name="debit")

    def __post_init__(self) -> None:
        if self.credit is None and self.credit_lowercase is not None:
            self.credit, self.credit_lowercase = self.credit_lowercase, None
        if self.debit is None and self.debit_lowercase is not None:
            self.debit, self.debit_lowercase = self.debit_lowercase, None


class Categorization(_Answer):
    """The ``200`` of ``GetCategorization``: the login's transactions, categorized."""

    __data_fields__ = ("transactions",)

    transactions: list[CategorizedTransaction] | None = None


class SubCategory(_Model):
    """A sub-category of the category list (``SubCategoryName``)."""

    sub_category_name: str | None = None
    description: str | None = None


class CategoryGroup(_Model):
    """A primary category of ``GET /BankingServices/Categories/{CA|US}``."""

    primary_category_name: str | None = None
    description: str | None = None
    sub_categories: list[SubCategory] | None = None


class AttributeInfo(_Model):
    """An attribute of the library: its name and what it means."""

    name: str | None = None
    description: str | None = None


class AttributeCategory(_Model):
    """A category of ``GET /attributes/library`` (or ``/library/business``)."""

    category: str | None = None
    attributes: list[AttributeInfo] | None = None
