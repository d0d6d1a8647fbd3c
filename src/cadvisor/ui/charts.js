// Small canvas charts for the container page: time-series line charts, stacked bars and
// donut gauges. No dependencies; every chart redraws from scratch on each call, scaled for
// the device pixel ratio. Each drawn canvas records how many points it showed in
// data-points, which the browser test reads.
"use strict";

const Charts = (() => {
  const PALETTE = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6",
                   "#dd4477", "#66aa00", "#b82e2e", "#316395", "#994499", "#22aa99"];

  function setup(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 600;
    const h = canvas.clientHeight || 200;
    if (canvas.width !== w * ratio || canvas.height !== h * ratio) {
      canvas.width = w * ratio;
      canvas.height = h * ratio;
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px sans-serif";
    return { ctx, w, h };
  }

  // A "nice" upper bound and step for an axis from 0 to max.
  function niceScale(max, ticks) {
    if (!(max > 0)) return { top: 1, step: 1 };
    const raw = max / ticks;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
    return { top: Math.ceil(max / step) * step, step };
  }

  function timeLabel(ms) {
    const d = new Date(ms);
    return [d.getHours(), d.getMinutes(), d.getSeconds()]
      .map((v) => String(v).padStart(2, "0")).join(":");
  }

  // series: [{label, points: [[timeMs, value], ...]}]; opts: {format(v), min0}
  function line(canvas, series, opts) {
    const { ctx, w, h } = setup(canvas);
    const fmt = (opts && opts.format) || ((v) => v.toFixed(2));
    const pad = { l: 64, r: 12, t: 8, b: 36 };
    let tMin = Infinity, tMax = -Infinity, vMax = 0, n = 0;
    for (const s of series) {
      for (const [t, v] of s.points) {
        tMin = Math.min(tMin, t); tMax = Math.max(tMax, t); vMax = Math.max(vMax, v); n++;
      }
    }
    canvas.dataset.points = String(n);
    if (n === 0) {
      ctx.fillStyle = "#888";
      ctx.fillText("waiting for data…", w / 2 - 40, h / 2);
      return;
    }
    if (tMax === tMin) tMax = tMin + 1000;
    const { top, step } = niceScale(vMax, 4);
    const x = (t) => pad.l + ((t - tMin) / (tMax - tMin)) * (w - pad.l - pad.r);
    const y = (v) => h - pad.b - (v / top) * (h - pad.t - pad.b);
    ctx.strokeStyle = "#e4e4e4"; ctx.fillStyle = "#555"; ctx.lineWidth = 1;
    for (let v = 0; v <= top + step / 2; v += step) {
      ctx.beginPath(); ctx.moveTo(pad.l, y(v)); ctx.lineTo(w - pad.r, y(v)); ctx.stroke();
      const label = fmt(v);
      ctx.fillText(label, pad.l - 6 - ctx.measureText(label).width, y(v) + 4);
    }
    for (let i = 0; i <= 4; i++) {
      const t = tMin + (i / 4) * (tMax - tMin);
      const label = timeLabel(t);
      ctx.fillText(label, Math.min(x(t) - 20, w - pad.r - 44), h - pad.b + 14);
    }
    series.forEach((s, i) => {
      ctx.strokeStyle = s.color || PALETTE[i % PALETTE.length];
      ctx.lineWidth = 1.6;
      ctx.beginPath();
      s.points.forEach(([t, v], j) => (j ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v))));
      ctx.stroke();
    });
    // Legend along the bottom.
    let lx = pad.l;
    series.forEach((s, i) => {
      const last = s.points.length ? s.points[s.points.length - 1][1] : 0;
      const text = `${s.label} ${fmt(last)}`;
      ctx.fillStyle = s.color || PALETTE[i % PALETTE.length];
      ctx.fillRect(lx, h - 14, 10, 10);
      ctx.fillStyle = "#333";
      ctx.fillText(text, lx + 14, h - 5);
      lx += ctx.measureText(text).width + 28;
    });
  }

  // A donut gauge: fraction in [0, 1], with a caption under the percentage.
  function gauge(canvas, fraction, caption) {
    const { ctx, w, h } = setup(canvas);
    const f = Math.max(0, Math.min(1, fraction || 0));
    const r = Math.min(w, h) / 2 - 10;
    const cx = w / 2, cy = h / 2 - 6;
    ctx.lineWidth = 14;
    ctx.strokeStyle = "#e6e6e6";
    ctx.beginPath(); ctx.arc(cx, cy, r, 0.75 * Math.PI, 2.25 * Math.PI); ctx.stroke();
    ctx.strokeStyle = f > 0.9 ? "#dc3912" : f > 0.7 ? "#ff9900" : "#109618";
    ctx.beginPath(); ctx.arc(cx, cy, r, 0.75 * Math.PI, (0.75 + 1.5 * f) * Math.PI); ctx.stroke();
    ctx.fillStyle = "#222";
    ctx.font = "bold 16px sans-serif";
    const pct = `${(f * 100).toFixed(1)}%`;
    ctx.fillText(pct, cx - ctx.measureText(pct).width / 2, cy + 6);
    ctx.font = "12px sans-serif";
    ctx.fillText(caption, cx - ctx.measureText(caption).width / 2, h - 6);
    canvas.dataset.points = "1";
  }

  // Horizontal stacked bar: parts [{label, value, color}] out of total.
  function bar(canvas, parts, total, format) {
    const { ctx, w, h } = setup(canvas);
    let x = 0;
    const width = w - 2;
    parts.forEach((p, i) => {
      const pw = total > 0 ? (p.value / total) * width : 0;
      ctx.fillStyle = p.color || PALETTE[i % PALETTE.length];
      ctx.fillRect(x, 4, pw, h - 26);
      x += pw;
    });
    ctx.strokeStyle = "#999";
    ctx.strokeRect(0.5, 4.5, width, h - 26);
    let lx = 0;
    parts.forEach((p, i) => {
      const text = `${p.label}: ${format(p.value)}`;
      ctx.fillStyle = p.color || PALETTE[i % PALETTE.length];
      ctx.fillRect(lx, h - 14, 10, 10);
      ctx.fillStyle = "#333";
      ctx.fillText(text, lx + 14, h - 5);
      lx += ctx.measureText(text).width + 28;
    });
    canvas.dataset.points = String(parts.length);
  }

  return { line, gauge, bar, PALETTE };
})();
