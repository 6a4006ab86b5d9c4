"""The page's clock filter (static/js/sync.js, ``Clock``; docs/web.md, "The clock") on generated
ping series with a known true offset, run in Chromium from the module the page loads.

Each series is a viewer pinging as the page does (a burst of 9 at 150 ms, then every second; 40
pings) over a link whose one-way delays are drawn per direction from a profile: the links of
the WAN browser tests, spikes (a fifth of the packets up to 500 ms late), a long tail, a route
change (10-20 ms becoming 100-200 ms), clocks that drift 50 ppm apart, and a server clock that
steps by a second. Paths are symmetric on average (no clock sync can tell a fixed asymmetry from
an offset). The server's time is whole milliseconds, as ours sends it.

What it shows: after every sample the estimate's real error stays within the error the clock
reports (the figure the page's correction trusts), bar a rare sample counted and bounded here;
once the burst is in, the error is a few milliseconds even on the 150 ± 50 ms link."""

from __future__ import annotations

import pytest

from tests import browser_support as bs

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("browser_tools")]

SERIES = 200  # per profile

GENERATE = """async ({series}) => {
  const s = await import('/static/js/sync.js');
  // mulberry32: a seeded generator, so every run sees the same series.
  const rng = (seed) => () => {
    seed = (seed + 0x6D2B79F5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const U = (r, a, b) => a + (b - a) * r();
  const link = (base, jitter) => (r) => [U(r, base - jitter, base + jitter), U(r, base - jitter, base + jitter)];
  const profiles = {
    "5 ± 2 ms": {delays: link(5, 2)},
    "15 ± 5 ms": {delays: link(15, 5)},
    "60 ± 20 ms": {delays: link(60, 20)},
    "150 ± 50 ms": {delays: link(150, 50)},
    "150 ± 50 ms, spikes": {delays: (r, i) => link(150, 50)(r).map((d) => d + (r() < 0.2 ? U(r, 0, 500) : 0))},
    "100 ms + long tail": {delays: (r) => [100 - 20 * Math.log(1 - r()), 100 - 20 * Math.log(1 - r())]},
    "route change 15 → 150 ms": {delays: (r, i) => (i < 15 ? link(15, 5) : link(150, 50))(r)},
    "clocks 50 ppm apart": {delays: link(60, 20), drift: 50e-6},
    "server clock steps 1 s": {delays: link(60, 20), step: {at: 20, by: 1000}},
  };
  const out = {};
  for (const [name, p] of Object.entries(profiles)) {
    let steps = 0, within = 0, overshoot = 0, trusted = [];
    const finals = [], bounds = [];
    for (let seed = 1; seed <= series; seed += 1) {
      const r = rng(seed * 7919 + name.length);
      const clock = new s.Clock();
      let t = 1e6 * r(), theta = 1.7e12 + 1e5 * r();
      for (let i = 0; i < 40; i += 1) {
        if (p.step && i === p.step.at) theta += p.step.by;
        const [up, down] = p.delays(r, i);
        const sent = t, received = t + up + down;
        const trueOffset = theta + (p.drift || 0) * (sent + up);
        clock.sample(sent, received, Math.floor(sent + up + trueOffset));
        const error = Math.abs(clock.offset - (theta + (p.drift || 0) * received));
        steps += 1;
        if (error <= clock.error) within += 1;
        else overshoot = Math.max(overshoot, error / clock.error);
        if (i >= 9) trusted.push(clock.error);
        t = received + (i < 9 ? 150 : 1000);
        if (i === 39) { finals.push(error); bounds.push(clock.error); }
      }
    }
    const q = (xs, f) => xs.sort((a, b) => a - b)[Math.floor(f * (xs.length - 1))];
    out[name] = {steps, within, overshoot, errorP50: q(finals, 0.5), errorP95: q(finals, 0.95),
                 boundP50: q(bounds, 0.5), boundP95: q(bounds, 0.95)};
  }
  return out;
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with bs.serving(tmp_path_factory.mktemp("clock-server")) as srv:
        yield srv


def test_the_clock_error_stays_within_its_reported_bound(server, browser):
    w = bs.open_page(browser, "clock")
    w.page.goto(f"{server.base}/login/")
    results = w.page.evaluate(GENERATE, {"series": SERIES})
    assert not w.problems, w.problems
    w.close()
    lines = [
        "| link (one way) | samples | within the reported error | final error p50 / p95 | reported p50 / p95 |"
    ]
    lines.append("| --- | --- | --- | --- | --- |")
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['steps']} | {100 * r['within'] / r['steps']:.2f} % | {r['errorP50']:.2f} / "
            f"{r['errorP95']:.2f} ms | {r['boundP50']:.2f} / {r['boundP95']:.2f} ms |"
        )
    bs.ARTIFACTS.mkdir(exist_ok=True)
    (bs.ARTIFACTS / "clock-results.md").write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))
    for name, r in results.items():
        assert r["steps"] == SERIES * 40, name
        # The reported error holds at (nearly) every sample, and where it does not, the real
        # error is within three times it: the page never trusts a clock that is far off.
        assert r["within"] / r["steps"] >= 0.997, (name, r)
        assert r["overshoot"] <= 3, (name, r)
    # Accurate once the burst is in, on every link; the reported error stays useful to the
    # correction (it is the dead band: docs/web.md).
    for name, r in results.items():
        assert r["errorP95"] <= 8, (name, r)
    assert results["5 ± 2 ms"]["boundP95"] <= 5 and results["15 ± 5 ms"]["boundP95"] <= 8
    assert results["150 ± 50 ms"]["boundP50"] <= 20
