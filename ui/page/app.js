/*
 * The Sluice UI page: runs, a run, tables. Plain browser JavaScript (no build step) over the JSON
 * endpoints of ui/server.ts; charts with Apache ECharts. Every text from the server goes into the
 * page as text (textContent, or escaped in chart tooltips), never as HTML.
 * `sluice report` inlines this file with one run's data in window.SLUICE_REPORT: the run view
 * alone, without actions.
 */
(() => {
  const REPORT = window.SLUICE_REPORT ?? null;
  const COLORS = {
    SUCCEEDED: '#2e9d5b',
    RUNNING: '#2f7fd8',
    FAILED: '#d64545',
    TIMED_OUT: '#d64545',
    ABORTED: '#d9911f',
    CAUGHT: '#d9911f',
    'NOT RUN': '#b8bec7',
  };
  const main = document.getElementById('main');
  let timer = null;
  const charts = [];

  const esc = (text) =>
    String(text ?? '').replace(
      /[&<>"']/g,
      (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c],
    );

  /** An element with attributes and children (strings become text nodes). */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else if (key === 'text') node.textContent = String(value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat(Number.POSITIVE_INFINITY)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  async function api(path, body) {
    const response = await fetch(
      path,
      body === undefined
        ? {}
        : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) },
    );
    const data = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
    if (!response.ok) throw new Error(data.error ?? `${response.status}`);
    return data;
  }

  const badge = (status) => el('span', { class: `badge ${String(status).replace(' ', '-')}`, text: status });
  const num = (n) => (n === null || n === undefined ? '' : Number(n).toLocaleString('en-US'));
  const when = (iso) => (iso ? iso.replace('T', ' ').slice(0, 19) : '');
  const seconds = (ms) => (ms === null || ms === undefined ? '' : `${(ms / 1000).toFixed(1)} s`);
  function duration(run) {
    const end = run.stoppedAt ? Date.parse(run.stoppedAt) : Date.now();
    const s = (end - Date.parse(run.startedAt)) / 1000;
    return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  }
  const table = (head, rows, attrs = {}) =>
    el(
      'div',
      { class: 'scroll' },
      el(
        'table',
        attrs,
        el(
          'thead',
          {},
          el(
            'tr',
            {},
            head.map((h) => el('th', { class: h.num ? 'num' : null, text: h.label ?? h })),
          ),
        ),
        el('tbody', {}, rows),
      ),
    );

  function chart(node, option) {
    const instance = echarts.init(node);
    instance.setOption(option);
    charts.push(instance);
    return instance;
  }

  function clear() {
    clearTimeout(timer);
    for (const instance of charts.splice(0)) instance.dispose();
    main.replaceChildren();
  }

  function confirmAction(text) {
    const dialog = document.getElementById('confirm');
    document.getElementById('confirm-text').textContent = text;
    return new Promise((resolve) => {
      dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
      dialog.showModal();
    });
  }

  /** Runs an action after a confirmation; shows what it started, or why not. */
  async function act(text, path, body, notice) {
    if (!(await confirmAction(text))) return;
    notice.className = 'notice';
    notice.textContent = 'Starting…';
    try {
      const { runs } = await api(path, body);
      notice.replaceChildren(
        'Started ',
        ...runs.flatMap((id, i) => [i > 0 ? ', ' : '', el('a', { href: `#/run/${id}`, text: id })]),
        '.',
      );
    } catch (error) {
      notice.className = 'notice bad';
      notice.textContent = error.message;
    }
  }

  // ---- Runs ----------------------------------------------------------------------------------

  const filters = { pipeline: '', status: '', trigger: '' };

  async function showRuns() {
    clear();
    const notice = el('div', { class: 'notice', hidden: true });
    const grid = el('div', { class: 'chart small', id: 'grid' });
    const list = el('div', { id: 'runs' });
    const controls = el('div', { class: 'filters' });
    const actions = el('div', { class: 'filters' });
    main.append(
      el('h1', { text: 'Runs' }),
      notice,
      el('div', { class: 'card' }, el('h2', { text: 'By day and pipeline' }), grid),
      el('div', { class: 'card' }, controls, list),
      el('div', { class: 'card' }, el('h2', { text: 'Actions' }), actions),
    );
    let gridChart = null;
    let data = null;

    const render = () => {
      const runs = data.runs.filter(
        (r) =>
          (!filters.pipeline || r.pipeline === filters.pipeline) &&
          (!filters.status || r.status === filters.status) &&
          (!filters.trigger || r.trigger === filters.trigger),
      );
      list.replaceChildren(
        runs.length === 0
          ? el('p', { class: 'muted', text: 'No runs yet.' })
          : table(
              [
                'Run',
                'Pipeline',
                'Trigger',
                'Status',
                'Started',
                'Duration',
                { label: 'Chunks', num: true },
                { label: 'Read', num: true },
                { label: 'Loaded', num: true },
                { label: 'Rejected', num: true },
                'Error',
              ],
              runs.map((r) =>
                el(
                  'tr',
                  { 'data-run': r.id, 'data-status': r.status },
                  el('td', {}, el('a', { href: `#/run/${r.id}`, text: r.id })),
                  el('td', { text: r.pipeline }),
                  el('td', { text: r.trigger }),
                  el('td', {}, badge(r.status)),
                  el('td', { text: when(r.startedAt) }),
                  el('td', { text: duration(r) }),
                  el('td', { class: 'num', text: num(r.chunks) }),
                  el('td', { class: 'num', text: num(r.rowsRead) }),
                  el('td', { class: 'num', text: num(r.rowsLoaded) }),
                  el('td', { class: 'num', text: num(r.rowsRejected) }),
                  el('td', { class: 'error', text: r.message ?? '' }),
                ),
              ),
              { id: 'runs-table' },
            ),
      );
      drawGrid(runs);
    };

    const drawGrid = (runs) => {
      // One cell per day and pipeline, coloured by its worst run: failed, running, succeeded.
      const rank = (s) => (s === 'SUCCEEDED' ? 0 : s === 'RUNNING' ? 1 : 2);
      // The last 14 days (UTC) up to the newest run, one column each, as Airflow's grid.
      const newest = [new Date().toISOString(), ...runs.map((r) => r.startedAt)].sort().pop();
      const days = Array.from({ length: 14 }, (_, i) =>
        new Date(Date.parse(newest.slice(0, 10)) - (13 - i) * 86_400_000).toISOString().slice(0, 10),
      );
      const pipelines = [...new Set(data.pipelines.map((p) => p.name).concat(runs.map((r) => r.pipeline)))];
      const cells = new Map();
      for (const r of runs) {
        const key = `${r.startedAt.slice(0, 10)}|${r.pipeline}`;
        const cell = cells.get(key) ?? { worst: 0, runs: 0, failed: 0 };
        cell.worst = Math.max(cell.worst, rank(r.status));
        cell.runs++;
        if (rank(r.status) === 2) cell.failed++;
        cells.set(key, cell);
      }
      const values = [...cells]
        .filter(([key]) => days.includes(key.split('|')[0]))
        .map(([key, c]) => {
          const [day, pipeline] = key.split('|');
          return [days.indexOf(day), pipelines.indexOf(pipeline), c.worst, c.runs, c.failed];
        });
      const option = {
        animation: false,
        tooltip: {
          formatter: (p) =>
            `${esc(pipelines[p.value[1]])} on ${esc(days[p.value[0]])}<br>${p.value[3]} run(s), ${p.value[4]} not succeeded`,
        },
        grid: { left: 110, right: 20, top: 10, bottom: 40 },
        xAxis: { type: 'category', data: days, axisLabel: { formatter: (d) => d.slice(5) } },
        yAxis: { type: 'category', data: pipelines },
        visualMap: {
          type: 'piecewise',
          dimension: 2,
          show: false,
          pieces: [
            { value: 0, color: COLORS.SUCCEEDED },
            { value: 1, color: COLORS.RUNNING },
            { value: 2, color: COLORS.FAILED },
          ],
        },
        series: [
          {
            type: 'heatmap',
            data: values,
            label: { show: true, color: '#fff', formatter: (p) => String(p.value[3]) },
            itemStyle: { borderColor: '#fff', borderWidth: 3, borderRadius: 4 },
          },
        ],
      };
      grid.style.height = `${60 + 34 * pipelines.length}px`;
      if (gridChart) {
        gridChart.resize();
        gridChart.setOption(option, true);
      } else gridChart = chart(grid, option);
    };

    const select = (name, options) =>
      el(
        'label',
        {},
        `${name} `,
        el(
          'select',
          {
            'data-filter': name,
            onchange: (e) => {
              filters[name] = e.target.value;
              render();
            },
          },
          el('option', { value: '', text: 'all' }),
          options.map((o) => el('option', { value: o, text: o, selected: filters[name] === o })),
        ),
      );

    const refresh = async () => {
      try {
        data = await api('/api/runs');
        notice.hidden = true;
      } catch (error) {
        notice.hidden = false;
        notice.className = 'notice bad';
        notice.textContent = error.message;
        timer = setTimeout(refresh, 5000);
        return;
      }
      const triggers = [...new Set(data.runs.map((r) => r.trigger))].sort();
      controls.replaceChildren(
        select(
          'pipeline',
          data.pipelines.map((p) => p.name),
        ),
        select('status', ['RUNNING', 'SUCCEEDED', 'FAILED', 'ABORTED', 'TIMED_OUT']),
        select('trigger', triggers),
        el('span', {
          class: 'muted',
          text: data.runs.some((r) => r.status === 'RUNNING') ? 'live: runs in progress' : '',
        }),
      );
      render();
      // Live while runs are in progress; slower otherwise, to see new ones.
      timer = setTimeout(refresh, data.runs.some((r) => r.status === 'RUNNING') ? 3000 : 15000);
      if (actions.childElementCount === 0) drawActions(actions, data.pipelines);
    };
    await refresh();
  }

  function drawActions(node, pipelines) {
    const notice = el('div', { class: 'notice', hidden: true });
    const pick = el(
      'select',
      { id: 'action-pipeline' },
      pipelines.map((p) => el('option', { value: p.name, text: p.name })),
    );
    const from = el('input', { type: 'date', id: 'backfill-from' });
    const to = el('input', { type: 'date', id: 'backfill-to' });
    const reload = el('input', { type: 'checkbox', id: 'backfill-reload' });
    const show = () => {
      notice.hidden = false;
      return notice;
    };
    node.append(
      el(
        'div',
        { class: 'filters' },
        el('label', {}, 'pipeline ', pick),
        el(
          'button',
          {
            class: 'primary',
            id: 'start-scheduled',
            onclick: () =>
              act(
                `Start the scheduled run of ${pick.value} now? It loads every input object not loaded yet.`,
                '/api/actions/scheduled',
                { pipeline: pick.value },
                show(),
              ),
          },
          'Start the scheduled run',
        ),
      ),
      el(
        'div',
        { class: 'filters' },
        el('label', {}, 'backfill from ', from),
        el('label', {}, 'to ', to),
        el('label', {}, reload, ' reload the rows first'),
        el(
          'button',
          {
            onclick: () =>
              act(
                `${reload.checked ? 'Reload and re-derive' : 'Re-derive'} ${pick.value} for ${from.value || '?'} to ${to.value || '?'}? One run per 7 days.`,
                '/api/actions/backfill',
                { pipeline: pick.value, from: from.value, to: to.value, reload: reload.checked },
                show(),
              ),
          },
          'Backfill',
        ),
      ),
      notice,
    );
  }

  // ---- A run ---------------------------------------------------------------------------------

  /** A run's page; `scrollY` when it is redrawn in place (a run in progress), to keep the reader's place. */
  async function showRun(id, scrollY) {
    clearTimeout(timer);
    let page;
    try {
      page = REPORT ? REPORT.page : await api(`/api/runs/${encodeURIComponent(id)}`);
    } catch (error) {
      clear();
      main.append(el('h1', { text: `Run ${id}` }), el('div', { class: 'notice bad', text: error.message }));
      return;
    }
    // The hash changed while the page was read: another view is shown by now.
    if (!REPORT && location.hash !== `#/run/${id}`) return;
    clear();
    const { run } = page;
    const notice = el('div', { class: 'notice', hidden: true });
    const canRedrive = !REPORT && ['FAILED', 'ABORTED', 'TIMED_OUT'].includes(run.status);
    main.append(
      el(
        'h1',
        {},
        `Run ${run.id} `,
        badge(run.status),
        canRedrive
          ? el(
              'button',
              {
                class: 'danger',
                id: 'redrive',
                style: 'margin-left:12px',
                onclick: () => {
                  notice.hidden = false;
                  act(
                    `Redrive ${run.id}? What it loaded stays loaded; the rest is planned again and loaded once.`,
                    '/api/actions/redrive',
                    { run: run.id },
                    notice,
                  );
                },
              },
              'Redrive',
            )
          : null,
      ),
      notice,
      el(
        'div',
        { class: 'card summary' },
        [
          ['pipeline', run.pipeline],
          ['trigger', run.trigger],
          ['started', when(run.startedAt)],
          ['duration', duration(run)],
          ['chunks', num(run.chunks ?? page.plan?.chunks)],
          ['rows read', num(run.rowsRead)],
          ['loaded', num(run.rowsLoaded)],
          ['rejected', num(run.rowsRejected)],
        ].map(([k, v]) => el('div', {}, el('span', { class: 'muted', text: k }), el('b', { text: v || '–' }))),
      ),
    );
    if (page.progress) {
      const p = page.progress;
      main.append(
        el('div', {
          class: 'notice',
          id: 'progress',
          text: `In progress: ${p.succeeded + p.failed} of ${p.total} chunks done (${p.running} running, ${p.pending} waiting${p.failed > 0 ? `, ${p.failed} failed` : ''}); this page follows it.`,
        }),
      );
    }
    if (page.failure) main.append(failureCard(page.failure));
    const gantt = el('div', { class: 'chart', id: 'gantt' });
    const steps = el('div', { class: 'chart small', id: 'steps' });
    const speed = el('div', { class: 'chart small', id: 'throughput' });
    main.append(
      el(
        'div',
        { class: 'row' },
        el('div', { class: 'card' }, el('h2', { text: 'Steps' }), steps, stepsTable(run.steps)),
        el('div', { class: 'card' }, el('h2', { text: 'Throughput (rows read per second)' }), speed),
      ),
      el(
        'div',
        { class: 'card' },
        el('h2', {
          text: `Chunks across worker slots (${page.chunks.length} chunks, ${page.slots} slots)`,
        }),
        el('p', {
          class: 'muted',
          text:
            page.timing === 'child executions'
              ? "Timings from the Distributed Map's child executions, in start order."
              : page.timing === 'none'
                ? 'No chunk timings yet.'
                : 'Timings from the chunk files; ↻ marks retried chunks, red failed ones.',
        }),
        gantt,
      ),
    );
    drawSteps(steps, run.steps);
    drawGantt(gantt, page.chunks);
    drawThroughput(speed, page.throughput);
    main.append(rejectsCard(run.id, page.rejects), statementsCard(page.statements));
    if (scrollY !== undefined) window.scrollTo(0, scrollY);
    if (REPORT) {
      main.append(el('p', { class: 'muted', text: `Report of run ${run.id}, read ${when(page.readAt)} UTC.` }));
    } else if (run.status === 'RUNNING') {
      timer = setTimeout(() => showRun(id, window.scrollY), 3000);
    }
  }

  function failureCard(failure) {
    return el(
      'div',
      { class: 'card failure', id: 'failure' },
      el('h2', { text: `Failed${failure.state ? ` in ${failure.state}` : ''}` }),
      el('p', { class: 'message', text: failure.message }),
      el(
        'dl',
        { class: 'facts' },
        el('dt', { text: 'error' }),
        el('dd', {}, el('code', { text: failure.errorType })),
        failure.error !== failure.errorType
          ? [el('dt', { text: 'state error' }), el('dd', { text: failure.error })]
          : [],
        failure.inputs.length > 0
          ? [el('dt', { text: 'input' }), el('dd', { text: failure.inputs.map((k) => k).join(', ') })]
          : [],
        failure.chunks.map((c) => [
          el('dt', { text: `chunk ${c.index}` }),
          el('dd', {
            text: `${c.errorType} in ${c.parts.join(', ')}${failure.message.includes(c.message) ? '' : `: ${c.message}`}`,
          }),
        ]),
        failure.cause && !failure.cause.includes(failure.message.replace(/\.$/, ''))
          ? [el('dt', { text: 'cause' }), el('dd', { text: failure.cause })]
          : [],
      ),
    );
  }

  const stepsTable = (steps) =>
    table(
      ['Step', 'Status', { label: 'Time', num: true }, { label: 'Times', num: true }],
      steps.map((s) =>
        el(
          'tr',
          {},
          el('td', { text: s.name }),
          el('td', {}, badge(s.status)),
          el('td', { class: 'num', text: seconds(s.ms) }),
          el('td', { class: 'num', text: s.times > 1 ? s.times : '' }),
        ),
      ),
    );

  function drawSteps(node, steps) {
    chart(node, {
      animation: false,
      grid: { left: 130, right: 20, top: 10, bottom: 30 },
      tooltip: { formatter: (p) => `${esc(p.name)}: ${(p.value / 1000).toFixed(2)} s` },
      xAxis: { type: 'value', axisLabel: { formatter: (v) => `${v / 1000} s` } },
      yAxis: { type: 'category', inverse: true, data: steps.map((s) => s.name) },
      series: [
        {
          type: 'bar',
          data: steps.map((s) => ({ value: s.ms, itemStyle: { color: COLORS[s.status] ?? COLORS.RUNNING } })),
        },
      ],
    });
  }

  function drawGantt(node, bars) {
    const timed = bars.filter((b) => b.startedAt);
    const slots = Math.max(1, ...timed.map((b) => b.slot + 1));
    node.style.height = `${Math.min(600, Math.max(160, slots * 26 + 60))}px`;
    const instance = chart(node, {
      animation: false,
      tooltip: {
        formatter: (p) => {
          const b = p.data.bar;
          return [
            `<b>chunk ${b.index}</b> ${esc(b.status)}${b.attempt > 1 ? `, attempt ${b.attempt}` : ''}`,
            esc(b.keys.join(', ')),
            `${((Date.parse(b.finishedAt ?? new Date().toISOString()) - Date.parse(b.startedAt)) / 1000).toFixed(2)} s`,
            b.rowsRead !== null ? `${num(b.rowsRead)} rows read, ${num(b.rowsRejected)} rejected` : '',
            b.error ? `${esc(b.errorType)}: ${esc(b.error)}` : '',
          ]
            .filter(Boolean)
            .join('<br>');
        },
      },
      grid: { left: 70, right: 20, top: 10, bottom: 30 },
      xAxis: { type: 'time' },
      yAxis: {
        type: 'category',
        inverse: true,
        data: Array.from({ length: slots }, (_, i) => `slot ${i + 1}`),
      },
      series: [
        {
          type: 'custom',
          encode: { x: [1, 2], y: 0 },
          renderItem: (params, api) => {
            const start = api.coord([api.value(1), api.value(0)]);
            const end = api.coord([api.value(2), api.value(0)]);
            const height = api.size([0, 1])[1] * 0.7;
            const rect = echarts.graphic.clipRectByRect(
              { x: start[0], y: start[1] - height / 2, width: Math.max(2, end[0] - start[0]), height },
              {
                x: params.coordSys.x,
                y: params.coordSys.y,
                width: params.coordSys.width,
                height: params.coordSys.height,
              },
            );
            if (!rect) return null;
            const bar = bars.find((b) => b.index === api.value(3));
            const label = `${api.value(3)}${bar && bar.attempt > 1 ? ` ↻${bar.attempt}` : ''}`;
            return {
              type: 'group',
              children: [
                { type: 'rect', shape: rect, style: api.style() },
                rect.width > 24
                  ? {
                      type: 'text',
                      style: {
                        text: label,
                        x: rect.x + 4,
                        y: rect.y + rect.height / 2,
                        verticalAlign: 'middle',
                        fill: '#fff',
                        fontSize: 11,
                      },
                    }
                  : null,
              ].filter(Boolean),
            };
          },
          data: timed.map((b) => ({
            name: `chunk ${b.index}`,
            value: [b.slot, Date.parse(b.startedAt), Date.parse(b.finishedAt ?? new Date().toISOString()), b.index],
            bar: b,
            itemStyle: {
              color: COLORS[b.status] ?? COLORS.RUNNING,
              borderColor: b.attempt > 1 ? COLORS.ABORTED : undefined,
              borderWidth: b.attempt > 1 ? 2 : 0,
            },
          })),
        },
      ],
    });
    node.dataset.bars = String(timed.length);
    return instance;
  }

  function drawThroughput(node, points) {
    if (points.length === 0) {
      node.replaceWith(el('p', { class: 'muted', text: 'No chunk has finished with rows yet.' }));
      return;
    }
    chart(node, {
      animation: false,
      grid: { left: 70, right: 20, top: 10, bottom: 30 },
      tooltip: { trigger: 'axis' },
      xAxis: { type: 'time' },
      yAxis: { type: 'value' },
      series: [
        {
          type: 'line',
          areaStyle: {},
          showSymbol: false,
          data: points.map((p) => [Date.parse(p.at), p.rowsPerSecond]),
        },
      ],
    });
  }

  function rejectsCard(id, rejects) {
    const card = el(
      'div',
      { class: 'card', id: 'rejects' },
      el('h2', { text: `Rejected lines (${num(rejects.total)})` }),
    );
    if (rejects.note) card.append(el('p', { class: 'muted', text: rejects.note }));
    if (rejects.top.length > 0) {
      card.append(
        table(
          ['Reason', 'Column', { label: 'Lines', num: true }, 'Example'],
          rejects.top.map((r) =>
            el(
              'tr',
              {},
              el('td', { text: r.reason }),
              el('td', { text: r.column ?? '' }),
              el('td', { class: 'num', text: num(r.count) }),
              el(
                'td',
                {},
                el('div', { class: 'muted', text: `${r.exampleKey} line ${r.exampleLine ?? '?'}` }),
                el('code', { text: r.exampleRaw ?? '' }),
              ),
            ),
          ),
        ),
      );
    }
    if (rejects.total > 0) {
      const holder = el('div', { style: 'margin-top:12px' });
      card.append(holder);
      const load = async (offset) => {
        let page;
        try {
          page = REPORT
            ? {
                rows: REPORT.rejects.rows.slice(offset, offset + 50),
                offset,
                total: Math.min(REPORT.rejects.total, REPORT.rejects.rows.length),
              }
            : await api(`/api/runs/${encodeURIComponent(id)}/rejects?offset=${offset}`);
        } catch (error) {
          holder.replaceChildren(el('div', { class: 'notice bad', text: error.message }));
          return;
        }
        holder.replaceChildren(
          table(
            ['Object', { label: 'Line', num: true }, 'Column', 'Reason', 'Line as read'],
            page.rows.map((r) =>
              el(
                'tr',
                {},
                el('td', { text: r.source_key }),
                el('td', { class: 'num', text: r.line_number }),
                el('td', { text: r.column_name ?? '' }),
                el('td', { text: r.reason }),
                el('td', {}, el('code', { text: r.raw_line ?? '' })),
              ),
            ),
            { id: 'rejects-table' },
          ),
          el(
            'div',
            { class: 'pager' },
            el('button', { disabled: offset === 0, onclick: () => load(Math.max(0, offset - 50)) }, '‹ previous'),
            el('span', {
              class: 'muted',
              text: `${page.total === 0 ? 0 : offset + 1}–${offset + page.rows.length} of ${num(page.total)}`,
            }),
            el('button', { disabled: offset + 50 >= page.total, onclick: () => load(offset + 50) }, 'next ›'),
          ),
        );
      };
      load(0);
    }
    return card;
  }

  function statementsCard(statements) {
    const shown = statements.filter((s) => s.step === 'load' || s.step === 'derive' || s.step === 'maintain');
    const setup = statements.length - shown.length;
    return el(
      'div',
      { class: 'card', id: 'statements' },
      el('h2', { text: 'SQL at load and derive' }),
      setup > 0 ? el('p', { class: 'muted', text: `and ${setup} setup statement(s) (table definitions)` }) : null,
      shown.length === 0
        ? el('p', { class: 'muted', text: 'No statements ran.' })
        : table(
            ['Step', 'Status', { label: 'Time', num: true }, 'SQL'],
            shown.map((s) =>
              el(
                'tr',
                {},
                el('td', { text: s.step }),
                el('td', {}, badge(s.status)),
                el('td', { class: 'num', text: seconds(s.ms) }),
                el('td', {}, el('pre', { class: 'sql', text: s.sql })),
              ),
            ),
          ),
    );
  }

  // ---- Tables --------------------------------------------------------------------------------

  async function showTables() {
    clear();
    const list = el('div', {}, el('p', { class: 'muted', text: 'Counting rows…' }));
    const sql = el('textarea', { id: 'sql', spellcheck: 'false' });
    const result = el('div', { id: 'query-result' });
    const run = async () => {
      result.replaceChildren(el('p', { class: 'muted', text: 'Running…' }));
      try {
        const { rows, columns } = await api('/api/query', { sql: sql.value });
        result.replaceChildren(
          rows.length === 0
            ? el('p', { class: 'muted', text: '(no rows)' })
            : table(
                columns,
                rows.map((r) =>
                  el(
                    'tr',
                    {},
                    columns.map((c) => el('td', { text: r[c] ?? '' })),
                  ),
                ),
                { id: 'query-table' },
              ),
        );
      } catch (error) {
        result.replaceChildren(el('div', { class: 'notice bad', text: error.message }));
      }
    };
    main.append(
      el('h1', { text: 'Tables' }),
      list,
      el(
        'div',
        { class: 'card' },
        el('h2', { text: 'Query (Athena, read-only)' }),
        sql,
        el('div', { class: 'pager' }, el('button', { class: 'primary', id: 'run-query', onclick: run }, 'Run')),
        result,
      ),
    );
    let tables;
    try {
      tables = await api('/api/tables');
    } catch (error) {
      list.replaceChildren(el('div', { class: 'notice bad', text: error.message }));
      return;
    }
    const main1 = tables.find((t) => t.kind === 'main' && t.rows !== null);
    sql.value = main1 ? `SELECT * FROM ${main1.table} LIMIT 20` : 'SHOW TABLES';
    list.replaceChildren(
      ...[...new Set(tables.map((t) => t.pipeline))].map((pipeline) =>
        el(
          'div',
          { class: 'card' },
          el('h2', { text: pipeline }),
          table(
            ['Table', 'Kind', { label: 'Rows', num: true }, 'Days'],
            tables
              .filter((t) => t.pipeline === pipeline)
              .map((t) =>
                el(
                  'tr',
                  { 'data-table': t.table },
                  el(
                    'td',
                    {},
                    el('a', {
                      href: '#/tables',
                      text: t.table,
                      onclick: (e) => {
                        e.preventDefault();
                        sql.value = `SELECT * FROM ${t.table} LIMIT 20`;
                        run();
                      },
                    }),
                  ),
                  el('td', { text: t.kind }),
                  el('td', { class: 'num', text: t.rows === null ? '' : num(t.rows) }),
                  el(
                    'td',
                    { class: t.note ? 'muted' : null },
                    t.note ??
                      (t.days.length === 0
                        ? ''
                        : `${t.days.length} day(s): ${t.days
                            .slice(0, 8)
                            .map((d) => `${d.day} (${num(d.rows)})`)
                            .join(', ')}${t.days.length > 8 ? ', …' : ''}`),
                  ),
                ),
              ),
          ),
        ),
      ),
    );
  }

  // ---- Routing -------------------------------------------------------------------------------

  function route() {
    const hash = location.hash || '#/runs';
    for (const link of document.querySelectorAll('[data-nav]')) {
      link.classList.toggle('active', hash.startsWith(`#/${link.dataset.nav}`));
    }
    const run = /^#\/run\/([A-Za-z0-9_-]+)$/.exec(hash);
    if (REPORT) showRun(REPORT.page.run.id);
    else if (run) showRun(run[1]);
    else if (hash.startsWith('#/tables')) showTables();
    else showRuns();
  }

  window.addEventListener('resize', () => {
    for (const instance of charts) instance.resize();
  });
  if (REPORT) {
    document.querySelector('.top nav').remove();
    document.getElementById('where').textContent = REPORT.where;
  } else {
    window.addEventListener('hashchange', route);
    api('/api/info')
      .then((info) => {
        document.getElementById('where').textContent = info.where;
      })
      .catch(() => {});
  }
  route();
})();
