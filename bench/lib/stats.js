'use strict';
// Small statistics over per-round samples.

const finite = (xs) => xs.filter((x) => typeof x === 'number' && Number.isFinite(x));

function median(xs) {
  const s = finite(xs).sort((a, b) => a - b);
  if (s.length === 0) return undefined;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

function summary(xs) {
  const s = finite(xs);
  if (s.length === 0) return null;
  return { median: median(s), min: Math.min(...s), max: Math.max(...s), n: s.length };
}

function mean(xs) {
  const s = finite(xs);
  return s.length ? s.reduce((a, b) => a + b, 0) / s.length : undefined;
}

/**
 * Ratio of a configuration to its anchor, from samples taken in the same rounds: the ratio is
 * computed per round (both measured minutes apart at most) and summarised, which cancels drift
 * of the machine between rounds better than a ratio of the two medians would. Also the 95 %
 * confidence interval of that median (`ci`, see medianCI; null below 6 rounds).
 * @param {Array<number|undefined>} values   per round, index = round
 * @param {Array<number|undefined>} anchors  per round, index = round
 */
function pairedRatio(values, anchors) {
  const ratios = [];
  for (let i = 0; i < Math.min(values.length, anchors.length); i++) {
    const v = values[i];
    const a = anchors[i];
    if (Number.isFinite(v) && Number.isFinite(a) && a !== 0) ratios.push(v / a);
  }
  const s = summary(ratios);
  return s && { ...s, ci: medianCI(ratios) };
}

/**
 * A distribution-free confidence interval for the median of `xs` (the order-statistic interval:
 * the number of samples below the true median is Binomial(n, 1/2)): [x(k), x(n+1-k)] for the
 * largest k with P(B < k) <= (1 - level) / 2, B ~ Binomial(n, 1/2). No assumption about the
 * shape of the samples, which on this VM have a long tail both ways. null below 6 samples (at
 * 95 %), where even the whole range covers the median with less than the level asked.
 */
function medianCI(xs, level = 0.95) {
  const s = finite(xs).sort((a, b) => a - b);
  const n = s.length;
  const tail = (1 - level) / 2;
  // P(B <= j) for j = 0, 1, ...: the first j where it passes `tail` gives k = j. The terms in
  // logarithms: 2^-n underflows past n = 1074, and the recurrence would stay at 0.
  let logP = -n * Math.LN2;
  let cdf = Math.exp(logP);
  let k = 0;
  for (let j = 0; j < n && cdf <= tail; j++) {
    k = j + 1;
    logP += Math.log(n - j) - Math.log(j + 1);
    cdf += Math.exp(logP);
  }
  if (k === 0) return null;
  return { lo: s[k - 1], hi: s[n - k], level };
}

module.exports = { median, mean, summary, pairedRatio, medianCI };
