"""`walletpos qr` and `walletpos scan` as an operator runs them (real subprocesses, private data dir)."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np

from drivers.sim.phone import Scene, render_scene
from tests.conftest import WALLETPOS
from tests.qr.conftest import cpm_text, make_code


def run(env, *args, code=0):
    proc = subprocess.run([*WALLETPOS, *args], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def test_qr_without_the_backend_says_it_needs_the_network(cli_env):
    """A merchant code is registered at the backend before it is shown; with the backend switched off
    (the embedded defaults' terminal is not enrolled) `walletpos qr` exits 11 and says why. The code
    printed and drawn against the sandbox: tests/backend/test_merchant_codes.py."""
    proc = run(cli_env, "qr", "--amount", "12.34", code=11)
    assert "network" in proc.stderr or "backend" in proc.stderr
    bad = run(cli_env, "qr", "--amount", "1.234", code=2)
    assert "--amount" in bad.stderr


def test_scan_a_folder_prints_one_json_line_per_code_without_card_numbers(cli_env, tmp_path, issuer):
    folder = tmp_path / "shots"
    folder.mkdir()
    pan = "6212345678901234"
    signed = make_code(issuer, issued=datetime.now(UTC))
    shots = {"a-cpm.png": cpm_text(pan=pan), "b-url.png": "https://example.com/menu",
             "c-wallet.png": signed, "d-numeric.png": "281234567890123456"}
    for name, text in shots.items():
        cv2.imwrite(str(folder / name), render_scene(text, Scene(code_px=300, seed=2)))
    cv2.imwrite(str(folder / "e-nothing.png"), np.zeros((720, 1280, 3), np.uint8))
    proc = run(cli_env, "scan", "--source", str(folder), "--json")
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(x["source"], x["kind"], x["format"]) for x in lines] == [
        ("a-cpm.png", "cpm", "qr"), ("b-url.png", "other", "qr"), ("c-wallet.png", "wallet_signed", "qr"),
        ("d-numeric.png", "wallet_numeric", "qr")]
    assert pan not in proc.stdout and "621234******1234" in lines[0]["text"]
    assert lines[1]["text"] == "https://example.com/menu" and "web address" in lines[1]["message"]
    assert lines[2]["text"] == signed and lines[2]["fields"]["wallet_id"] == "W100"
    assert lines[3]["text"] == "281234********3456" and "281234567890123456" not in proc.stdout
    assert all(x["decode_ms"] > 0 for x in lines)
    plain = run(cli_env, "scan", "--source", str(folder / "b-url.png")).stdout
    assert plain.startswith("b-url.png: other (a web address")


def test_scan_pay_with_a_signed_code_from_a_video_then_the_replay_is_declined(cli_env, tmp_path, issuer, qr_config):
    video = tmp_path / "phone.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (1280, 720))
    frame = render_scene(make_code(issuer, issued=datetime.now(UTC) - timedelta(seconds=2), counter=77),
                         Scene(code_px=320, tilt_y=20, seed=5))
    for _ in range(8):
        writer.write(frame)
    writer.release()
    args = ("scan", "--config", str(qr_config), "--source", str(video), "--pay", "--amount", "8.00", "--json")
    first = json.loads(run(cli_env, *args).stdout.splitlines()[0])
    assert first["kind"] == "wallet_signed" and first["payment"]["outcome"] == "approved"
    again = json.loads(run(cli_env, *args, code=10).stdout.splitlines()[0])
    assert again["payment"]["outcome"] == "declined" and again["payment"]["reasons"] == ["code_already_used"]
    status = json.loads(run(cli_env, "status", "--json").stdout)
    assert status["journal"]["approved"] == 1 and status["journal"]["declined"] == 1


def test_scan_usage_and_read_errors(cli_env, tmp_path):
    help_text = run(cli_env, "--help").stdout
    assert "qr " in help_text and "scan" in help_text
    assert "--pay needs --amount" in run(cli_env, "scan", "--source", "x.png", "--pay", code=2).stderr
    missing = run(cli_env, "scan", "--source", str(tmp_path / "none.mp4"), code=13)
    assert "no such file" in missing.stderr
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.zeros((100, 100, 3), np.uint8))
    assert "0 code(s) read from 1 frame(s)" in run(cli_env, "scan", "--source", str(blank), code=13).stderr


def test_cli_and_payment_flow_load_no_camera_libraries():
    """cv2, zxing-cpp and zbar load only when a camera or image is used (walletpos --help stays fast)."""
    import sys

    code = ("import sys, terminal.cli, terminal.codepay, terminal.commands.qr; terminal.cli.build_parser(); "
            "print(sorted(m for m in ('cv2', 'zxingcpp', 'pyzbar', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
