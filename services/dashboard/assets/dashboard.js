// pushflow dashboard: reads the merchant API (/api/v1) with the store's
// token and draws what it answers; the charts are SVG drawn by the server.
// Reloads its numbers every refresh interval while the page is visible.
(() => {
  'use strict';

  const TOKEN_KEY = 'pushflow-dashboard-token';
  const $ = (id) => document.getElementById(id);
  const meta = (name) => (document.querySelector(`meta[name="${name}"]`) || {}).content || '';
  const refreshMs = Math.max(1000, Number(meta('pushflow-refresh-ms')) || 5000);
  const windows = meta('pushflow-windows').split(',').filter(Boolean);

  const params = new URLSearchParams(location.search);
  const state = {
    store: params.get('store') || '',
    campaign: params.get('campaign') || '',
    window: windows.includes(params.get('window')) ? params.get('window') : (windows[0] || '1h'),
    token: '',
    loading: false,
    refreshes: 0,
  };

  function storage(action, value) {
    try {
      if (action === 'get') return localStorage.getItem(TOKEN_KEY) || '';
      if (action === 'set') localStorage.setItem(TOKEN_KEY, value);
      if (action === 'remove') localStorage.removeItem(TOKEN_KEY);
    } catch (_) { /* storage disabled: the token lives for this page only */ }
    return '';
  }

  // ?token= (local use): kept, then taken out of the address bar.
  if (params.has('token')) {
    state.token = params.get('token');
    storage('set', state.token);
    params.delete('token');
    writeUrl();
  } else {
    state.token = storage('get');
  }

  function writeUrl() {
    const p = new URLSearchParams();
    if (state.store) p.set('store', state.store);
    if (state.campaign) p.set('campaign', state.campaign);
    if (state.window && state.window !== windows[0]) p.set('window', state.window);
    history.replaceState(null, '', `${location.pathname}?${p}`);
  }

  class AuthError extends Error {}

  async function call(path, as) {
    const url = `/api/v1/stores/${encodeURIComponent(state.store)}${path}`;
    const r = await fetch(url, {
      headers: { Authorization: `Bearer ${state.token}` },
      cache: 'no-store',
    });
    if (r.status === 401 || r.status === 403) {
      const body = await r.json().catch(() => ({}));
      throw new AuthError(body.error || `HTTP ${r.status}`);
    }
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      const e = new Error(body.error || `HTTP ${r.status}`);
      e.status = r.status;
      throw e;
    }
    return as === 'text' ? r.text() : r.json();
  }

  const fmt = new Intl.NumberFormat('en-US');
  const count = (n) => fmt.format(n);
  const percent = (ctr) => `${(ctr * 100).toFixed(1)} %`;
  const when = (iso) => new Date(iso).toLocaleString(undefined, {
    dateStyle: 'medium', timeStyle: 'short',
  });
  const enc = encodeURIComponent;

  function day(d) { return d.toISOString().slice(0, 10); }

  function setNumber(id, n) {
    const el = $(id);
    el.textContent = count(n);
    el.dataset.value = String(n);
  }

  function setStatus(text, isError) {
    const el = $('status');
    el.textContent = text;
    el.classList.toggle('error', Boolean(isError));
  }

  function timeEl(iso) {
    const t = document.createElement('time');
    t.dateTime = iso;
    t.textContent = when(iso);
    t.title = iso;
    return t;
  }

  function putSvg(el, text) {
    const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
    const svg = doc.documentElement;
    if (!svg || svg.nodeName !== 'svg') throw new Error('the chart is not SVG');
    el.replaceChildren(document.importNode(svg, true));
  }

  function chartWidth(el) {
    return Math.max(240, Math.min(1600, Math.round(el.clientWidth || 720)));
  }

  function describe(c) {
    if (c.launched_at) return ['Launched ', c.launched_at];
    if (c.cancelled_at) return ['Cancelled ', c.cancelled_at];
    if (c.scheduled_at) return ['Scheduled for ', c.scheduled_at];
    if (c.created_at) return ['Created ', c.created_at];
    return ['', null];
  }

  function renderCampaign(c) {
    const section = $('campaign');
    section.dataset.campaignId = c ? c.campaign_id : '';
    if (!c) {
      $('campaign-title').textContent = 'No campaign yet';
      $('campaign-status').textContent = '';
      $('campaign-meta').textContent = '';
      for (const f of ['dispatched', 'delivered', 'clicked', 'audience', 'failed', 'expired']) {
        $(`campaign-${f}`).textContent = '–';
      }
      $('campaign-ctr').textContent = '–';
      $('campaign-chart').replaceChildren();
      return;
    }
    $('campaign-title').textContent = c.title || c.campaign_id;
    const pill = $('campaign-status');
    pill.textContent = c.status;
    pill.className = `pill ${c.status}`;
    const [what, at] = describe(c);
    const m = $('campaign-meta');
    m.replaceChildren();
    if (at) m.append(what, timeEl(at), ' · ');
    m.append(`id ${c.campaign_id}`);
    for (const f of ['dispatched', 'delivered', 'clicked', 'audience', 'failed', 'expired']) {
      setNumber(`campaign-${f}`, c[f]);
    }
    const ctr = $('campaign-ctr');
    ctr.textContent = percent(c.ctr);
    ctr.dataset.value = String(c.ctr);
    const top = Math.max(c.audience, c.dispatched, c.delivered, 1);
    for (const f of ['dispatched', 'delivered', 'clicked']) {
      $(`bar-${f}`).style.width = `${(100 * c[f]) / top}%`;
    }
    $('window-name').textContent = c.window;
  }

  function renderToggle() {
    const box = $('window-toggle');
    box.replaceChildren(...windows.map((w) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = w;
      b.setAttribute('aria-pressed', String(w === state.window));
      b.addEventListener('click', () => {
        state.window = w;
        writeUrl();
        renderToggle();
        load();
      });
      return b;
    }));
  }

  function renderList(campaigns, selectedId) {
    const tpl = $('campaign-item');
    const items = campaigns.map((c) => {
      const li = tpl.content.firstElementChild.cloneNode(true);
      li.dataset.campaignId = c.campaign_id;
      li.dataset.testid = 'campaign-row';
      li.classList.toggle('selected', c.campaign_id === selectedId);
      const a = li.querySelector('a');
      const p = new URLSearchParams({ store: state.store, campaign: c.campaign_id });
      a.href = `?${p}`;
      a.addEventListener('click', (ev) => {
        ev.preventDefault();
        state.campaign = c.campaign_id;
        writeUrl();
        load();
      });
      li.querySelector('.title').textContent = c.title || c.campaign_id;
      const pill = li.querySelector('.pill');
      pill.textContent = c.status;
      pill.className = `pill ${c.status}`;
      const [what, at] = describe(c);
      const w = li.querySelector('.when');
      if (at) w.append(what, timeEl(at));
      for (const f of ['dispatched', 'delivered', 'clicked']) {
        const b = li.querySelector(`[data-field="${f}"]`);
        b.textContent = count(c[f]);
        b.dataset.value = String(c[f]);
      }
      const ctr = li.querySelector('[data-field="ctr"]');
      ctr.textContent = percent(c.ctr);
      ctr.dataset.value = String(c.ctr);
      const top = Math.max(c.audience, c.dispatched, 1);
      li.querySelector('.b-delivered').style.width = `${(100 * (c.delivered - c.clicked)) / top}%`;
      li.querySelector('.b-clicked').style.width = `${(100 * c.clicked) / top}%`;
      return li;
    });
    $('campaign-list').replaceChildren(...items);
  }

  function renderScheduled(campaigns) {
    const items = campaigns
      .filter((c) => c.status === 'scheduled')
      .sort((a, b) => a.scheduled_at.localeCompare(b.scheduled_at))
      .map((c) => {
        const li = document.createElement('li');
        li.dataset.campaignId = c.campaign_id;
        li.dataset.scheduledAt = c.scheduled_at;
        li.dataset.testid = 'scheduled-row';
        const name = document.createElement('span');
        name.textContent = c.title || c.campaign_id;
        li.append(name, timeEl(c.scheduled_at));
        return li;
      });
    $('scheduled-list').replaceChildren(...items);
  }

  function renderSubscribers(days) {
    const last = days[days.length - 1];
    setNumber('subscribers-active', last ? last.active : 0);
    setNumber('subscribers-subscribed', days.reduce((s, d) => s + d.subscribed, 0));
    setNumber('subscribers-expired', days.reduce((s, d) => s + d.expired, 0));
  }

  function renderBilling(b) {
    $('billing-month').textContent = b.month;
    setNumber('billing-impressions', b.impressions);
    setNumber('billing-clicks', b.clicks);
  }

  function showLogin(message) {
    $('board').hidden = true;
    $('sign-out').hidden = true;
    $('login').hidden = false;
    $('login-store').value = state.store;
    $('login-error').textContent = message || '';
    setStatus('');
  }

  async function load() {
    if (!state.token || !state.store) {
      showLogin(state.store ? '' : 'Name a store.');
      return;
    }
    if (state.loading) return;
    state.loading = true;
    try {
      const now = new Date();
      const to = day(now);
      const from = day(new Date(now.getTime() - 29 * 86400000));
      const month = to.slice(0, 7);
      const [list, subs, bill] = await Promise.all([
        call(`/campaigns?window=${enc(state.window)}`),
        call(`/subscribers?from=${from}&to=${to}`),
        call(`/billing?month=${month}`),
      ]);
      const campaigns = list.campaigns;
      const chosen = state.campaign
        || (campaigns.find((c) => c.status === 'launched') || campaigns[0] || {}).campaign_id;
      // Draw while hidden boxes have no width: the board is shown first.
      $('login').hidden = true;
      $('board').hidden = false;
      $('sign-out').hidden = false;
      const [current, campaignSvg, subscribersSvg] = await Promise.all([
        chosen ? call(`/campaigns/${enc(chosen)}?window=${enc(state.window)}`) : null,
        chosen
          ? call(`/campaigns/${enc(chosen)}/chart.svg?window=${enc(state.window)}&width=${chartWidth($('campaign-chart'))}`, 'text')
          : null,
        call(`/subscribers/chart.svg?from=${from}&to=${to}&width=${chartWidth($('subscribers-chart'))}`, 'text'),
      ]);
      $('store-name').textContent = state.store;
      document.title = `pushflow · ${state.store}`;
      renderCampaign(current);
      if (campaignSvg) putSvg($('campaign-chart'), campaignSvg);
      renderList(campaigns, chosen);
      renderScheduled(campaigns);
      renderSubscribers(subs.days);
      putSvg($('subscribers-chart'), subscribersSvg);
      renderBilling(bill);
      state.refreshes += 1;
      const u = $('updated');
      u.dateTime = now.toISOString();
      u.textContent = now.toLocaleTimeString();
      $('board').dataset.refreshes = String(state.refreshes);
      setStatus(`refreshing every ${Math.round(refreshMs / 1000)} s`);
    } catch (e) {
      if (e instanceof AuthError) {
        showLogin(e.message);
      } else {
        setStatus(`could not load: ${e.message}`, true);
      }
    } finally {
      state.loading = false;
    }
  }

  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.store = $('login-store').value.trim();
    state.token = $('login-token').value.trim();
    $('login-token').value = '';
    storage('set', state.token);
    writeUrl();
    load();
  });

  $('sign-out').addEventListener('click', () => {
    storage('remove');
    state.token = '';
    showLogin('Signed out.');
  });

  let resizeTimer = 0;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(load, 300);
  });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) load();
  });
  setInterval(() => {
    if (!document.hidden && !$('board').hidden) load();
  }, refreshMs);

  renderToggle();
  load();
})();
