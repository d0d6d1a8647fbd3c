// The container page: what cAdvisor's /containers/ shows, from this server's own API,
// refreshed every second. The container is the page path after /containers (the root
// when empty). Everything is fetched from the same origin.
"use strict";

(() => {
  const NUM_STATS = 60;
  const name = decodeURIComponent(location.pathname.replace(/^\/containers/, "")).replace(/\/+$/, "") || "/";
  const $ = (id) => document.getElementById(id);
  const state = { machine: null, perCpu: [], topTick: 0, psTick: 0, iface: null };
  // Read by the browser test: how many full refreshes have drawn live data.
  window.__containerPage = { draws: 0, errors: 0, name };

  const bytes = (v) => {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return `${v.toFixed(v >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
  };
  const cores = (v) => `${v.toFixed(v >= 10 ? 1 : 3)}`;
  const ts = (s) => Date.parse(s);
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  const link = (n) => `<a href="/containers${n === "/" ? "/" : n}">${esc(n)}</a>`;

  async function getJSON(url, body) {
    const r = await fetch(url, body === undefined ? {} : { method: "POST", body: JSON.stringify(body) });
    if (!r.ok) throw new Error(`${url}: ${r.status} ${await r.text()}`);
    return r.json();
  }

  // Rates between consecutive samples: [[timeMs, perSecond], ...].
  function rates(stats, pick, scale) {
    const out = [];
    for (let i = 1; i < stats.length; i++) {
      const dt = (ts(stats[i].timestamp) - ts(stats[i - 1].timestamp)) / 1000;
      const dv = pick(stats[i]) - pick(stats[i - 1]);
      if (dt > 0 && dv >= 0) out.push([ts(stats[i].timestamp), dv / dt / (scale || 1)]);
    }
    return out;
  }

  function header(info) {
    const parts = name === "/" ? [] : name.split("/").filter(Boolean);
    let path = "";
    const crumbs = [`<a href="/containers/">root</a>`].concat(parts.map((p) => {
      path += "/" + p;
      return `<a href="/containers${path}">${esc(p)}</a>`;
    }));
    $("crumbs").innerHTML = crumbs.join(" / ");
    const aliases = (info.aliases || []).join(", ");
    $("title").textContent = aliases ? `${name} (${aliases})` : name;
    const labels = Object.entries(info.spec.labels || {}).map(([k, v]) => `<li><code>${esc(k)}=${esc(v)}</code></li>`).join("");
    $("identity").innerHTML = (info.spec.image ? `<p>Image: <code>${esc(info.spec.image)}</code></p>` : "")
      + (info.namespace ? `<p>Namespace: ${esc(info.namespace)}</p>` : "")
      + (labels ? `<ul class="labels">${labels}</ul>` : "");
    const subs = (info.subcontainers || []).map((s) => `<li>${link(s.name)}</li>`).join("");
    $("subcontainers").innerHTML = subs || "<li class=muted>none</li>";
  }

  function isolation(spec) {
    const m = state.machine;
    const rows = [];
    if (spec.has_cpu) {
      rows.push(["CPU shares", spec.cpu.limit]);
      rows.push(["Allowed cores", spec.cpu.mask || `all (${m ? m.num_cores : "?"})`]);
      if (spec.cpu.quota) rows.push(["CPU limit", `${cores(spec.cpu.quota / spec.cpu.period)} cores (quota ${spec.cpu.quota} µs per ${spec.cpu.period} µs)`]);
    }
    if (spec.has_memory) {
      const lim = spec.memory.limit;
      const unlimited = !lim || lim > 2 ** 62 || (m && lim >= m.memory_capacity);
      rows.push(["Memory limit", unlimited ? "unlimited" : bytes(lim)]);
      if (spec.memory.reservation && spec.memory.reservation < 2 ** 62) rows.push(["Memory reservation", bytes(spec.memory.reservation)]);
      if (spec.memory.swap_limit && spec.memory.swap_limit < 2 ** 62) rows.push(["Swap limit", bytes(spec.memory.swap_limit)]);
    }
    if (spec.has_processes && spec.processes.limit) rows.push(["Task limit", spec.processes.limit]);
    $("isolation").innerHTML = rows.map(([k, v]) => `<tr><th>${k}</th><td>${esc(v)}</td></tr>`).join("");
  }

  function cpuLimitCores(spec) {
    if (spec.has_cpu && spec.cpu.quota && spec.cpu.period) return spec.cpu.quota / spec.cpu.period;
    return state.machine ? state.machine.num_cores : 1;
  }

  function memLimit(spec) {
    const m = state.machine;
    const lim = spec.memory.limit;
    if (!lim || lim > 2 ** 62 || (m && lim > m.memory_capacity)) return m ? m.memory_capacity : 0;
    return lim;
  }

  function overview(info, cpuRate) {
    const stats = info.stats, last = stats[stats.length - 1];
    const cpuNow = cpuRate.length ? cpuRate[cpuRate.length - 1][1] : 0;
    const lim = cpuLimitCores(info.spec);
    Charts.gauge($("gauge-cpu"), cpuNow / lim, `CPU ${cores(cpuNow)} / ${cores(lim)} cores`);
    const mlim = memLimit(info.spec);
    Charts.gauge($("gauge-mem"), mlim ? last.memory.usage / mlim : 0, `Memory ${bytes(last.memory.usage)} / ${bytes(mlim)}`);
    const fs = last.filesystem || [];
    $("gauges-fs").innerHTML = fs.map((f, i) => `<canvas id="gauge-fs-${i}" class="gauge"></canvas>`).join("");
    fs.forEach((f, i) => Charts.gauge($(`gauge-fs-${i}`), f.capacity ? f.usage / f.capacity : 0, `FS ${f.device}`));
  }

  function cpuCharts(stats, cpuRate) {
    Charts.line($("cpu-total"), [{ label: "total (cores)", points: cpuRate }], { format: cores });
    Charts.line($("cpu-breakdown"), [
      { label: "user", points: rates(stats, (s) => s.cpu.usage.user, 1e9) },
      { label: "system", points: rates(stats, (s) => s.cpu.usage.system, 1e9) },
    ], { format: cores });
    // Per-core: per_cpu_usage comes with the newest sample only; keep our own history.
    const last = stats[stats.length - 1];
    const per = last.cpu.usage.per_cpu_usage;
    if (per && per.length) {
      const hist = state.perCpu;
      if (!hist.length || hist[hist.length - 1].t !== ts(last.timestamp)) hist.push({ t: ts(last.timestamp), v: per });
      while (hist.length > NUM_STATS) hist.shift();
      const series = per.map((_, c) => ({ label: `cpu${String(c).padStart(2, "0")}`, points: [] }));
      for (let i = 1; i < hist.length; i++) {
        const dt = (hist[i].t - hist[i - 1].t) / 1000;
        if (dt <= 0) continue;
        series.forEach((s, c) => {
          const dv = hist[i].v[c] - hist[i - 1].v[c];
          if (dv >= 0) s.points.push([hist[i].t, dv / dt / 1e9]);
        });
      }
      Charts.line($("cpu-percore"), series, { format: cores });
      $("percore-note").textContent = "";
    } else {
      $("percore-note").textContent = "Per-core usage is not available for this container (no cpuacct.usage_percpu).";
    }
  }

  function memoryCharts(info) {
    const stats = info.stats;
    Charts.line($("mem-usage"), [
      { label: "usage", points: stats.map((s) => [ts(s.timestamp), s.memory.usage]) },
      { label: "working set", points: stats.map((s) => [ts(s.timestamp), s.memory.working_set]) },
    ], { format: bytes });
    const last = stats[stats.length - 1].memory;
    const hot = last.working_set, cold = Math.max(0, last.usage - last.working_set);
    const total = memLimit(info.spec) || last.usage;
    Charts.bar($("mem-hotcold"), [
      { label: "hot (working set)", value: hot, color: "#dc3912" },
      { label: "cold", value: cold, color: "#3366cc" },
      { label: "free", value: Math.max(0, total - hot - cold), color: "#eeeeee" },
    ], total, bytes);
    $("mem-details").textContent = `rss ${bytes(last.rss)} · cache ${bytes(last.cache)} · swap ${bytes(last.swap)} · mapped ${bytes(last.mapped_file)} · failcnt ${last.failcnt}`;
  }

  function networkCharts(stats) {
    const names = [...new Set(stats.flatMap((s) => (s.network.interfaces || []).map((i) => i.name)))];
    const sel = $("iface");
    if (names.join() !== [...sel.options].map((o) => o.value).join()) {
      sel.innerHTML = names.map((n) => `<option>${esc(n)}</option>`).join("");
      if (!state.iface || !names.includes(state.iface)) {
        // Start with the busiest interface.
        const last = stats[stats.length - 1].network.interfaces || [];
        const busiest = [...last].sort((a, b) => (b.rx_bytes + b.tx_bytes) - (a.rx_bytes + a.tx_bytes))[0];
        state.iface = busiest ? busiest.name : names[0];
      }
      sel.value = state.iface;
    }
    $("network").style.display = names.length ? "" : "none";
    if (!names.length) return;
    state.iface = sel.value;
    const pick = (field) => (s) => {
      const i = (s.network.interfaces || []).find((x) => x.name === state.iface);
      return i ? i[field] : 0;
    };
    Charts.line($("net-throughput"), [
      { label: "tx bytes/s", points: rates(stats, pick("tx_bytes")) },
      { label: "rx bytes/s", points: rates(stats, pick("rx_bytes")) },
    ], { format: bytes });
    Charts.line($("net-errors"), [
      { label: "tx errors/s", points: rates(stats, pick("tx_errors")) },
      { label: "rx errors/s", points: rates(stats, pick("rx_errors")) },
    ], { format: (v) => v.toFixed(2) });
  }

  function filesystems(stats) {
    const fs = stats[stats.length - 1].filesystem || [];
    $("filesystems").style.display = fs.length ? "" : "none";
    $("fs-list").innerHTML = fs.map((f, i) => `<div class="fs"><b>${esc(f.device)}</b> (${esc(f.type)})<canvas id="fs-bar-${i}" class="bar"></canvas></div>`).join("");
    fs.forEach((f, i) => Charts.bar($(`fs-bar-${i}`), [{ label: "used", value: f.usage, color: "#3366cc" }], f.capacity, bytes));
  }

  async function processes() {
    const ps = await getJSON(`/api/v2.0/ps${name === "/" ? "/" : name}`);
    ps.sort((a, b) => b.percent_cpu - a.percent_cpu);
    $("ps").innerHTML = ps.slice(0, 30).map((p) => `<tr><td>${esc(p.user)}</td><td>${p.pid}</td><td>${p.parent_pid}</td><td>${esc(p.start_time)}</td>`
      + `<td>${p.percent_cpu.toFixed(1)}</td><td>${p.percent_mem.toFixed(1)}</td><td>${bytes(p.rss)}</td><td>${bytes(p.virtual_size)}</td>`
      + `<td>${esc(p.status)}</td><td>${esc(p.running_time)}</td><td><code>${esc(p.cmd)}</code></td></tr>`).join("")
      || `<tr><td colspan=11 class=muted>no processes in this cgroup itself</td></tr>`;
  }

  async function topSubcontainers() {
    const all = await getJSON(`/api/v2.0/stats${name === "/" ? "" : name}?recursive=true&count=2`);
    const rows = Object.entries(all).filter(([n]) => n !== name).map(([n, s]) => {
      const a = s[0], b = s[s.length - 1];
      const dt = s.length > 1 ? (ts(b.timestamp) - ts(a.timestamp)) / 1000 : 0;
      const cpu = dt > 0 ? (b.cpu.usage.total - a.cpu.usage.total) / dt / 1e9 : 0;
      return { n, cpu: Math.max(0, cpu), mem: b.memory ? b.memory.working_set : 0 };
    });
    const table = (sorted, f) => sorted.slice(0, 8).map((r) => `<tr><td>${link(r.n)}</td><td>${f(r)}</td></tr>`).join("") || "<tr><td class=muted>none</td></tr>";
    $("top-cpu").innerHTML = table([...rows].sort((a, b) => b.cpu - a.cpu), (r) => `${cores(r.cpu)} cores`);
    $("top-mem").innerHTML = table([...rows].sort((a, b) => b.mem - a.mem), (r) => bytes(r.mem));
  }

  async function refresh() {
    try {
      if (!state.machine) state.machine = await getJSON("/api/v1.3/machine");
      const info = await getJSON(`/api/v1.3/containers${name === "/" ? "/" : name}`, { num_stats: NUM_STATS });
      header(info);
      isolation(info.spec);
      const stats = info.stats || [];
      if (stats.length) {
        const cpuRate = rates(stats, (s) => s.cpu.usage.total, 1e9);
        overview(info, cpuRate);
        cpuCharts(stats, cpuRate);
        memoryCharts(info);
        networkCharts(stats);
        filesystems(stats);
      }
      if (state.psTick++ % 5 === 0) await processes();
      if (state.topTick++ % 5 === 0) await topSubcontainers();
      $("status").textContent = `updated ${new Date().toLocaleTimeString()}`;
      $("status").className = "";
      if (stats.length > 1) window.__containerPage.draws++;
    } catch (e) {
      window.__containerPage.errors++;
      $("status").textContent = String(e.message || e);
      $("status").className = "error";
    }
  }

  $("iface").addEventListener("change", () => { state.iface = $("iface").value; });
  refresh();
  setInterval(refresh, 1000);
})();
