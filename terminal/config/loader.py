"""Loading: a TOML file (or an already parsed mapping) validated into the typed, frozen objects of
`terminal.config.schema`. Missing keys take their documented defaults; a wrong key, type or value
is a `ConfigError` naming the file, the key and what is allowed.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from terminal.config.schema import EMBEDDED, ROOT_SECTIONS, Config, TerminalConfig, TierLimits, is_table, type_hints
from terminal.core.money import Currency, Money, parse_amount
from terminal.errors import ConfigError, MoneyError


@dataclass(frozen=True)
class _Ctx:
    source: str
    cur: Currency | None



def _where(path: tuple[str, ...]) -> str:
    if len(path) == 1:
        return f"[{path[0]}]"
    return f"[{'.'.join(path[:-1])}] {path[-1]}"


def _fail(ctx: _Ctx, path: tuple[str, ...], message: str) -> typing.NoReturn:
    raise ConfigError(f"config error in {ctx.source}: {_where(path)}: {message}")


def _describe(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 40 else text[:37] + "..."


def _type_name(tp: Any) -> str:
    if tp is Money:
        return 'an amount as a string, e.g. "300.00"'
    if tp is bool:
        return "true or false"
    if tp is int:
        return "a whole number"
    if tp is str:
        return "a string"
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(f'"{a}"' for a in get_args(tp))
    if get_origin(tp) in (tuple, list):
        return f"a list of {_type_name(get_args(tp)[0])}s"
    if is_table(tp):
        return "a table"
    return str(tp)


def _convert(ctx: _Ctx, path: tuple[str, ...], tp: Any, raw: Any, meta: Mapping[str, Any]) -> Any:
    origin = get_origin(tp)
    if is_table(tp):
        if not isinstance(raw, dict):
            _fail(ctx, path, f"expected a table, got {_describe(raw)}")
        return _build(ctx, path, tp, raw)
    if isinstance(raw, float):
        hint = " (amounts are strings: write \"300.00\", never a float)" if tp is Money else ""
        _fail(ctx, path, f"floats are not accepted, got {raw!r}; expected {_type_name(tp)}{hint}")
    if tp is Money:
        if not isinstance(raw, str):
            _fail(ctx, path, f"expected {_type_name(tp)}, got {_describe(raw)}")
        assert ctx.cur is not None
        try:
            return parse_amount(raw, ctx.cur, allow_zero=True)
        except MoneyError as exc:
            _fail(ctx, path, f"{exc}; expected an amount in {ctx.cur.alpha} such as \"300.00\"")
    if tp is bool:
        if not isinstance(raw, bool):
            _fail(ctx, path, f"expected true or false, got {_describe(raw)}")
        return raw
    if tp is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            _fail(ctx, path, f"expected a whole number, got {_describe(raw)}")
        lo, hi = meta.get("minimum"), meta.get("maximum")
        if (lo is not None and raw < lo) or (hi is not None and raw > hi):
            _fail(ctx, path, f"{raw} is out of range; allowed {lo} to {hi}")
        return raw
    if tp is str:
        if not isinstance(raw, str):
            _fail(ctx, path, f"expected a string, got {_describe(raw)}")
        pat = meta.get("pattern")
        if pat is not None and not re.fullmatch(pat, raw):
            _fail(ctx, path, f"{_describe(raw)} is not allowed; expected {meta['allowed'] or 'text matching ' + pat}")
        return raw
    if origin is Literal:
        allowed = get_args(tp)
        if raw not in allowed or type(raw) is not type(allowed[0]):
            _fail(ctx, path, f"{_describe(raw)} is not allowed; expected {_type_name(tp)}")
        return raw
    if origin in (tuple, list):
        if not isinstance(raw, list):
            _fail(ctx, path, f"expected {_type_name(tp)}, got {_describe(raw)}")
        (item_tp,) = [a for a in get_args(tp) if a is not Ellipsis]
        return tuple(
            _convert(ctx, (*path[:-1], f"{path[-1]}[{i}]"), item_tp, item, {**meta, "check": None})
            for i, item in enumerate(raw)
        )
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in get_args(tp) if a is not type(None)]
        if raw == "" and type(None) in get_args(tp):
            return None
        return _convert(ctx, path, inner[0], raw, meta)
    raise AssertionError(f"unsupported config type {tp!r} at {_where(path)}")


def _build(ctx: _Ctx, path: tuple[str, ...], cls: type, given: Mapping[str, Any]) -> Any:
    declared = {f.name: f for f in fields(cls)}
    for key in given:
        if key not in declared:
            near = difflib.get_close_matches(key, list(declared), n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            _fail(ctx, (*path, key), f"unknown key{hint}; allowed keys here: {', '.join(declared)}")
    hints = type_hints(cls)
    values: dict[str, Any] = {}
    for name, f in declared.items():
        meta = f.metadata
        default = meta["default"]
        raw = given.get(name, default)
        if is_table(hints[name]) and name in given and isinstance(raw, dict):
            raw = {**default, **raw}
        value = _convert(ctx, (*path, name), hints[name], raw, meta)
        check = meta.get("check")
        if check is not None:
            problem = check(value)
            if problem:
                _fail(ctx, (*path, name), f"{_describe(raw)} is not allowed; expected {problem}")
        values[name] = value
    return cls(**values)


def _cross_checks(ctx: _Ctx, cfg: Config) -> None:
    for tier in ("unverified", "real_name"):
        limits: TierLimits = getattr(cfg.wallet_tiers, tier)
        if limits.payment_limit > limits.daily_limit:
            _fail(ctx, ("wallet_tiers", tier, "payment_limit"),
                  "must not be larger than daily_limit of the same tier")
    if cfg.display.group_separator == cfg.display.decimal_separator:
        _fail(ctx, ("display", "group_separator"), "must differ from decimal_separator")
    if not cfg.limits.contactless_transaction_limit.is_positive:
        _fail(ctx, ("limits", "contactless_transaction_limit"), "must be more than zero")
    if cfg.sync.backoff_initial_ms > cfg.sync.backoff_max_ms:
        _fail(ctx, ("sync", "backoff_initial_ms"), "must not be larger than backoff_max_ms")


def config_from_mapping(data: Mapping[str, Any], source: str = EMBEDDED) -> Config:
    """Validate a parsed TOML document (missing keys take their documented defaults)."""
    ctx = _Ctx(source, None)
    for key in data:
        if key not in ROOT_SECTIONS:
            near = difflib.get_close_matches(key, list(ROOT_SECTIONS), n=1)
            hint = f" (did you mean [{near[0]}]?)" if near else ""
            _fail(ctx, (key,), f"unknown section{hint}; allowed sections: {', '.join(ROOT_SECTIONS)}")
        if not isinstance(data[key], dict):
            _fail(ctx, (key,), f"expected a table [{key}], got {_describe(data[key])}")
    hints = type_hints(Config)
    terminal = _build(ctx, ("terminal",), TerminalConfig, data.get("terminal", {}))
    ctx = _Ctx(source, terminal.currency_info)
    built: dict[str, Any] = {"terminal": terminal}
    for name in ROOT_SECTIONS[1:]:
        built[name] = _build(ctx, (name,), hints[name], data.get(name, {}))
    cfg = Config(**built, source=source)
    _cross_checks(ctx, cfg)
    return cfg


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load the config named by `path`, else by $WALLETPOS_CONFIG, else the embedded defaults."""
    env = os.environ if env is None else env
    if path is None and env.get("WALLETPOS_CONFIG"):
        path = env["WALLETPOS_CONFIG"]
    if path is None:
        return config_from_mapping({})
    file = Path(path)
    try:
        text = file.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config error: {file} does not exist (check --config or WALLETPOS_CONFIG)") from None
    except IsADirectoryError:
        raise ConfigError(f"config error: {file} is a directory; give the path of a .toml file") from None
    except PermissionError:
        raise ConfigError(f"config error: {file} cannot be read (permission denied)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config error in {file}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config error in {file}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise ConfigError(f"config error in {file}: not valid TOML: arrays or inline tables are nested too "
                          "deeply") from None
    return config_from_mapping(data, str(file))


__all__ = ["config_from_mapping", "load_config"]
