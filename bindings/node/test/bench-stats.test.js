'use strict';
// bench/lib/stats.js: the median's confidence interval that the head-to-head tables print and
// that decides whether a target's verdict is marked "(bound inside the CI)".
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');

const { medianCI, pairedRatio } = require(path.join(__dirname, '..', '..', '..', 'bench', 'lib', 'stats.js'));

const ranks = (n) => Array.from({ length: n }, (_, i) => i + 1);

// P(B < k) for B ~ Binomial(n, 1/2), exactly: sum of C(n, j) for j < k, over 2^n.
function below(n, k) {
  let c = 1n;
  let sum = 0n;
  for (let j = 0; j < k; j++) {
    sum += c;
    c = (c * BigInt(n - j)) / BigInt(j + 1);
  }
  return { num: sum, den: 1n << BigInt(n) };
}
// num/den <= p, for p = 0.025 = 1/40.
const atMostTail = ({ num, den }) => num * 40n <= den;

test('the interval is the order-statistic one of the published tables', () => {
  // Lower and upper ranks (1-based) from the tables of the sign-test interval at >= 95 %.
  const table = { 6: [1, 6], 10: [2, 9], 12: [3, 10], 16: [4, 13], 20: [6, 15], 24: [7, 18], 30: [10, 21] };
  for (const [n, [lo, hi]] of Object.entries(table)) {
    const ci = medianCI(ranks(Number(n)));
    assert.deepEqual([ci.lo, ci.hi], [lo, hi], `n = ${n}`);
    assert.equal(ci.level, 0.95);
  }
});

test('every sample count from 6 to 200 gets the widest-coverage k of the exact binomial', () => {
  for (let n = 6; n <= 200; n++) {
    const ci = medianCI(ranks(n));
    const k = ci.lo;
    assert.equal(ci.hi, n + 1 - k, `n = ${n}: symmetric ranks`);
    assert.ok(atMostTail(below(n, k)), `n = ${n}: P(B < ${k}) must be <= 2.5 %`);
    assert.ok(!atMostTail(below(n, k + 1)), `n = ${n}: k = ${k + 1} would still fit, the interval is too wide`);
  }
});

test('thousands of samples: no underflow, the interval narrows around the middle', () => {
  for (const n of [1000, 1075, 5000]) {
    const ci = medianCI(ranks(n));
    assert.ok(atMostTail(below(n, ci.lo)) && !atMostTail(below(n, ci.lo + 1)), `n = ${n}`);
    // About n/2 -+ 1.96 * sqrt(n)/2.
    const half = 0.98 * Math.sqrt(n);
    assert.ok(Math.abs(n / 2 - ci.lo - half) < 3, `n = ${n}: lo ${ci.lo}`);
  }
});

test('below 6 samples there is no 95 % interval; input order and non-numbers do not matter', () => {
  for (let n = 0; n < 6; n++) assert.equal(medianCI(ranks(n)), null, `n = ${n}`);
  const shuffled = [1.2, 0.7, undefined, 0.9, NaN, 1.0, 1.4, 0.8, 1.1, 0.95, 1.05, 1.3, 0.85, 0.75];
  const ci = medianCI(shuffled);
  // 12 finite values, sorted: 0.7 0.75 0.8 0.85 0.9 0.95 1.0 1.05 1.1 1.2 1.3 1.4;
  // ranks 3 and 10.
  assert.deepEqual([ci.lo, ci.hi], [0.8, 1.2]);
});

test('pairedRatio carries the interval of its per-round ratios', () => {
  const anchors = ranks(12).map(() => 100);
  const values = ranks(12).map((i) => 80 + 2 * i); // ratios 0.82 .. 1.04
  const r = pairedRatio(values, anchors);
  assert.equal(r.n, 12);
  assert.ok(Math.abs(r.ci.lo - 0.86) < 1e-12 && Math.abs(r.ci.hi - 1.0) < 1e-12, JSON.stringify(r.ci));
  assert.ok(r.ci.lo <= r.median && r.median <= r.ci.hi);
  assert.equal(pairedRatio([1, 2, 3], [1, 1, 1]).ci, null);
});
