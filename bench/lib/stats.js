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
 * of the machine between rounds better than a ratio of the two medians would.
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
  return summary(ratios);
}

module.exports = { median, mean, summary, pairedRatio };
