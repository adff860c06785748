"""Monitoring, live on this machine: `tsforge monitor demo`'s run (a real TorchServe, Debian's
Prometheus with the shipped rules over a 30 s window) for an image, a tabular and a text model.

While each model gets its own held-out rows no drift alert fires and every PSI stays far under
the threshold; once its inputs move (digits inverted, a diabetes feature scaled, German texts)
the input-drift alert fires for each, and `tsforge monitor` shows which signals moved.
"""

from __future__ import annotations

import pytest

from tsforge.cli import main
from tsforge.monitoring import demo, rules
from tsforge.server.torchserve import free_port


def test_drift_alerts_silent_on_held_out_traffic_and_firing_on_shifted_traffic(built, tmp_path, capsys):
    result = demo.run(tmp_path, store=built.store, log=lambda line: None)
    calm, fired = demo.statuses(result, "calm"), demo.statuses(result, "fired")
    assert {m.model for m in calm} >= set(demo.MODELS)
    for m in calm:
        assert not [a for a in m.alerts if a.split(" ")[0] in rules.DRIFT_ALERTS], m
        assert m.signals and max(s.psi for s in m.signals) < demo.THRESHOLDS.psi / 2, m
    shown = {m.model: m.alerts for m in fired}
    assert "ModelInputDrift (mean_intensity)" in shown["digits"], shown
    assert "ModelInputDrift (bmi)" in shown["diabetes"], shown
    assert "ModelInputDrift (pieces_per_word)" in shown["minilm"], shown
    assert "ModelInputDrift (contrast)" not in shown["digits"]  # an inverted digit keeps its contrast
    assert (tmp_path / "drift.png").stat().st_size > 10_000
    block = demo.readme_block(result)
    assert "ModelInputDrift" in block and "drift alerts firing: none" in block
    with capsys.disabled():
        print(f"\ninput drift fired {result['seconds_to_fire']:.0f} s after the shift\n{block}")


def test_monitor_names_prometheus_when_it_does_not_answer(capsys):
    assert main(["monitor", "--prometheus", f"http://127.0.0.1:{free_port()}"]) == 1
    err = capsys.readouterr().err
    assert "Prometheus does not answer" in err and "Traceback" not in err


@pytest.mark.parametrize("window", ["15 minutes", "1x"])
def test_monitor_rules_refuses_a_window_that_is_not_a_duration(window, tmp_path, capsys):
    assert main(["monitor", "rules", "--window", window, "--out", str(tmp_path / "r.yml")]) == 2
    assert "Prometheus duration" in capsys.readouterr().err
    assert not (tmp_path / "r.yml").exists()


def test_the_readmes_drift_block_is_the_published_demos():
    import json

    result = json.loads((demo.PUBLISHED / "demo.json").read_text())
    readme = demo.README.read_text()
    assert demo.BLOCK.search(readme), "the README has no <!-- monitor:drift --> block"
    assert demo.render(readme, result) == readme, "run `tsforge monitor demo --publish`: the README differs"
