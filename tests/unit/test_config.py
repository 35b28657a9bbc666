"""Config: TOML validated into frozen objects; every mistake is a ConfigError naming file, key and
what is allowed (each message asserted)."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from terminal.config import Config, defaults_toml, iter_keys, load_config
from terminal.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "terminal.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_embedded_defaults_load_and_are_frozen():
    cfg = load_config(env={})
    assert cfg.source == "<embedded defaults>"
    assert cfg.terminal.currency == "CNY" and cfg.currency.numeric == 156
    assert cfg.limits.floor_limit.minor == 10000
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.limits.floor_limit = cfg.limits.cvm_required_limit  # type: ignore[misc]


def test_default_toml_is_the_generated_documentation():
    """config/default.toml documents every key and equals the embedded defaults."""
    text = (ROOT / "config" / "default.toml").read_text(encoding="utf-8")
    assert text == defaults_toml(), "regenerate with: walletpos config defaults > config/default.toml"
    assert load_config(ROOT / "config" / "default.toml") == load_config(env={})
    lines = text.splitlines()
    for path in iter_keys():
        key_line = next(i for i, line in enumerate(lines) if line.startswith(f"{path[-1]} = ")
                        and _table_of(lines, i) == ".".join(path[:-1]))
        assert lines[key_line - 1].startswith("# "), f"{'.'.join(path)} has no comment"


def _table_of(lines: list[str], index: int) -> str:
    for line in reversed(lines[:index]):
        if line.startswith("["):
            return line.strip("[]")
    return ""


@pytest.mark.parametrize("name", ["retail.toml", "transit.toml", "default.toml"])
def test_example_configs_load(name):
    cfg = load_config(ROOT / "config" / name)
    assert cfg.source.endswith(name)


def test_examples_differ_where_they_say():
    retail = load_config(ROOT / "config" / "retail.toml")
    transit = load_config(ROOT / "config" / "transit.toml")
    assert retail.terminal.mode == "retail" and retail.display.locale == "zh-CN"
    assert transit.terminal.mode == "transit" and transit.offline.max_hours_since_sync == 72
    assert transit.terminal.merchant_category_code == "4111"


def test_partial_file_keeps_other_defaults(tmp_path):
    cfg = load_config(write(tmp_path, '[limits]\nfloor_limit = "20.00"\n'))
    assert cfg.limits.floor_limit.minor == 2000
    assert cfg.limits.cvm_required_limit.minor == 100000
    assert cfg.wallet_tiers.real_name.daily_limit.minor == 5_000_000


def test_nested_tier_keeps_its_own_defaults(tmp_path):
    cfg = load_config(write(tmp_path, '[wallet_tiers.real_name]\npayment_limit = "3000.00"\n'))
    assert cfg.wallet_tiers.real_name.payment_limit.minor == 300000
    assert cfg.wallet_tiers.real_name.daily_limit.minor == 5_000_000
    assert cfg.wallet_tiers.unverified.payment_limit.minor == 50000


def test_amounts_follow_the_terminal_currency(tmp_path):
    cfg = load_config(write(tmp_path, '[terminal]\ncurrency = "JPY"\n[limits]\nfloor_limit = "5000"\n'
                                      'contactless_transaction_limit = "100000"\ncvm_required_limit = "30000"\n'
                                      '[offline]\nmax_payment = "3000"\ncard_daily_amount = "10000"\n'
                                      'exposure_cap = "1000000"\n[wallet_tiers.unverified]\n'
                                      'payment_limit = "5000"\ndaily_limit = "10000"\n'
                                      '[wallet_tiers.real_name]\npayment_limit = "50000"\ndaily_limit = "500000"\n'))
    assert cfg.limits.floor_limit.minor == 5000 and cfg.limits.floor_limit.currency.alpha == "JPY"


def test_env_var_chooses_the_file(tmp_path):
    path = write(tmp_path, '[terminal]\nid = "ENV00001"\n')
    assert load_config(env={"WALLETPOS_CONFIG": str(path)}).terminal.id == "ENV00001"
    other = tmp_path / "other.toml"
    other.write_text('[terminal]\nid = "ARG00001"\n')
    assert load_config(other, env={"WALLETPOS_CONFIG": str(path)}).terminal.id == "ARG00001"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[limits]\nflor_limit = "1.00"\n',
         r"\[limits\] flor_limit: unknown key \(did you mean floor_limit\?\); allowed keys here: "
         r"contactless_transaction_limit, floor_limit, cvm_required_limit"),
        ('[limitz]\n', r"\[limitz\]: unknown section \(did you mean \[limits\]\?\); allowed sections: terminal,"),
        ("[limits]\nfloor_limit = 100.0\n",
         r"\[limits\] floor_limit: floats are not accepted, got 100\.0; expected an amount as a string, "
         r"e\.g\. \"300\.00\" \(amounts are strings"),
        ("[limits]\nfloor_limit = 100\n",
         r"\[limits\] floor_limit: expected an amount as a string, e\.g\. \"300\.00\", got 100"),
        ('[limits]\nfloor_limit = "1.005"\n',
         r"\[limits\] floor_limit: '1\.005' has 3 decimals; CNY allows at most 2; expected an amount in CNY"),
        ('[limits]\nfloor_limit = "-1"\n', r"\[limits\] floor_limit: '-1': amounts cannot be negative"),
        ('[offline]\ncard_daily_count = "ten"\n',
         r"\[offline\] card_daily_count: expected a whole number, got \"ten\""),
        ("[offline]\ncard_daily_count = -1\n", r"\[offline\] card_daily_count: -1 is out of range; allowed 0 to 10000"),
        ("[offline]\nmax_hours_since_sync = 0\n",
         r"\[offline\] max_hours_since_sync: 0 is out of range; allowed 1 to 336"),
        ("[display]\nbell = \"yes\"\n", r"\[display\] bell: expected true or false, got \"yes\""),
        ('[display]\nlocale = "fr"\n', r"\[display\] locale: \"fr\" is not allowed; expected one of \"en\", \"zh-CN\""),
        ('[terminal]\nmode = "kiosk"\n',
         r"\[terminal\] mode: \"kiosk\" is not allowed; expected one of \"retail\", \"transit\""),
        ('[terminal]\ncurrency = "YEN"\n',
         r"\[terminal\] currency: \"YEN\" is not allowed; expected an ISO 4217 alphabetic currency code"),
        ('[terminal]\ncurrency = "156"\n',
         r"\[terminal\] currency: \"156\" is not allowed; expected an alphabetic ISO 4217 code"),
        ('[terminal]\ncountry = "XX"\n',
         r"\[terminal\] country: \"XX\" is not allowed; expected an ISO 3166-1 alpha-2"),
        ('[terminal]\ntimezone = "Mars/Olympus"\n',
         r"\[terminal\] timezone: \"Mars/Olympus\" is not allowed; expected an IANA time zone name"),
        ('[terminal]\nid = "TOO-LONG-ID"\n',
         r"\[terminal\] id: \"TOO-LONG-ID\" is not allowed; expected 1-8 letters or digits$"),
        ('[terminal]\nmerchant_category_code = "54a1"\n',
         r"\[terminal\] merchant_category_code: \"54a1\" is not allowed; expected four digits, e\.g\. 5411$"),
        ("limits = 5\n", r"\[limits\]: expected a table \[limits\], got 5"),
        ("[wallet_tiers]\nunverified = 3\n", r"\[wallet_tiers\] unverified: expected a table, got 3"),
        ('[wallet_tiers.unverified]\npayment_limit = "2000.00"\n',
         r"\[wallet_tiers.unverified\] payment_limit: must not be larger than daily_limit of the same tier"),
        ('[display]\ngroup_separator = "."\n', r"\[display\] group_separator: must differ from decimal_separator"),
        ('[limits]\ncontactless_transaction_limit = "0"\n',
         r"\[limits\] contactless_transaction_limit: must be more than zero"),
        ('[terminal]\nmerchant_name = "A name much longer than twenty-five"\n',
         r"\[terminal\] merchant_name: \"A name much longer than twenty-five\" is not allowed; "
         r"expected 1-25 characters"),
        ("[refunds]\nwindow_days = 30\n", r"\[refunds\] window_days: 30 is out of range; allowed 0 to 7"),
        ("[limits\nfloor_limit = 1", r"not valid TOML: "),
    ],
)
def test_every_mistake_names_file_key_and_what_is_allowed(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"^config error in {tmp_path}/terminal\.toml: {message}") as info:
        load_config(path)
    assert "Traceback" not in str(info.value)


def test_missing_unreadable_and_binary_files(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.toml does not exist \(check --config or WALLETPOS_CONFIG\)"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"is a directory; give the path of a \.toml file"):
        load_config(tmp_path)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=r"bin\.toml: not UTF-8 text \(byte 0\)"):
        load_config(binary)


def test_generated_defaults_parse_as_toml():
    data = tomllib.loads(defaults_toml())
    assert set(data) == {f.name for f in dataclasses.fields(Config) if f.name != "source"}
    assert {"terminal", "limits", "offline", "wallet_tiers", "refunds", "log"} <= set(data)
    assert {"backend", "sync"} <= set(data)
    assert {"camera", "qr"} <= set(data)
