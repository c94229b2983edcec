// Unit tests of the dashboard's pure helpers, run by Node.js's test runner
// (crates/daemon/tests/ui_units.rs runs them: node --test).

import { test } from "node:test";
import assert from "node:assert/strict";
import { clockTime, loadColor, niceTicks, timeTicks } from "../plot.js";

test("nice ticks cover the range with round steps", () => {
  assert.deepEqual(niceTicks(0, 1.1, 4), [0, 0.5, 1]);
  assert.deepEqual(niceTicks(0, 0.25, 4), [0, 0.1, 0.2]);
  assert.deepEqual(niceTicks(0, 35, 4), [0, 10, 20, 30]);
  for (const [hi, count] of [[0.0031, 4], [7.7, 4], [2.5e9, 5], [1, 3]]) {
    const ticks = niceTicks(0, hi, count);
    assert.ok(ticks.length >= 2 && ticks.length <= count + 2, `${hi}: ${ticks}`);
    assert.ok(ticks.every((t) => t >= 0 && t <= hi * (1 + 1e-9)), `${hi}: ${ticks}`);
    const step = ticks[1] - ticks[0];
    const mantissa = step / 10 ** Math.floor(Math.log10(step));
    assert.ok([1, 2, 5].some((m) => Math.abs(mantissa - m) < 1e-6), `step ${step}`);
  }
  assert.deepEqual(niceTicks(3, 3, 4), [3], "an empty range gives its one value");
});

test("time ticks fall on round clock steps within the span", () => {
  const t0 = Date.UTC(2026, 0, 1, 10, 0, 7);
  const { ticks, stepMs } = timeTicks(t0, t0 + 60_000, 6);
  assert.equal(stepMs, 10_000);
  assert.ok(ticks.every((t) => t % stepMs === 0 && t >= t0 && t <= t0 + 60_000));
  assert.equal(timeTicks(t0, t0 + 3 * 3600_000, 6).stepMs, 1800_000);
});

test("clock time is zero padded", () => {
  const t = new Date(2026, 0, 1, 9, 5, 3).getTime();
  assert.equal(clockTime(t), "09:05:03");
  assert.equal(clockTime(t, false), "09:05");
});

test("load colours run from light to dark and clamp", () => {
  const lum = (load) => {
    const [r, g, b] = loadColor(load).css.match(/\d+/g).map(Number);
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  for (let x = 0; x < 1; x += 0.05) assert.ok(lum(x + 0.05) <= lum(x) + 1e-9, `at ${x}`);
  assert.equal(loadColor(-1).css, loadColor(0).css);
  assert.equal(loadColor(3).css, loadColor(1).css);
  assert.equal(loadColor(0).light, false);
  assert.equal(loadColor(0.9).light, true);
});
