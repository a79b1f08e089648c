// One run, live: status and fields, actions, open gates, the review, changed files and
// their diffs, the audit's verdict, a coordinator's plan, and a timeline that follows the
// run's stream (every event once, across disconnects and server restarts), with a time
// slider that shows the run as it stood after any event (?at_sequence=).

import { get, post, call } from '../api.js'
import { follow } from '../stream.js'
import { h, badge, when, debounce, throttle, summary } from '../dom.js'
import { VirtualList } from '../vlist.js'
import { setConnection } from '../app.js'
import { planPanel } from './plan.js'

const TERMINAL = ['completed', 'merged', 'declined', 'merge_failed', 'failed', 'cancelled']

function fields (run) {
  const rows = [
    ['Status', badge(run.status)], ['Run', h('span', { class: 'mono' }, run.run_id)],
    ['Attempt', `${run.attempt} of ${run.max_attempts}`], ['Revision', run.revision],
    ['Project', run.project_id ? h('a', { href: `#/projects/${run.project_id}` }, run.project_id.slice(0, 8)) : null],
    ['Parent', run.parent_run_id ? h('a', { href: `#/runs/${run.parent_run_id}` }, run.parent_run_id.slice(0, 8)) : null],
    ['Agent', [run.agent, run.model].filter(Boolean).join(' · ')], ['Created', when(run.created_at)],
    ['Ended', when(run.ended_at)], ['Events', run.last_sequence],
    ['Failure', run.failure ? `${run.failure.category}: ${run.failure.message}` : null],
    ['Changes', run.diff_stats ? `${run.diff_stats.files} files, +${run.diff_stats.added} −${run.diff_stats.removed}` : null],
    ['Merge', run.merge_result ? JSON.stringify(run.merge_result) : null]
  ].filter(([, v]) => v !== null && v !== undefined && v !== '' && v !== 0)
  return h('dl', { class: 'fields', id: 'run-fields' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))
}

function actions (run, act) {
  const buttons = []
  if (run.status === 'in_progress') buttons.push(h('button', { type: 'button', onclick: () => act('pause') }, 'Pause'))
  if (run.status === 'paused') buttons.push(h('button', { type: 'button', onclick: () => act('resume') }, 'Resume'))
  if (!TERMINAL.includes(run.status) && run.status !== 'merging') buttons.push(h('button', { type: 'button', class: 'danger', onclick: () => act('cancel') }, 'Cancel run'))
  if (['failed', 'merge_failed'].includes(run.status)) buttons.push(h('button', { type: 'button', onclick: () => act('retry') }, 'Retry'))
  return h('div', { class: 'row', id: 'run-actions' }, buttons)
}

function gatesPanel (run, resolve) {
  if (!run.open_gates.length) return null
  return h('section', { class: 'panel', id: 'gates', 'aria-label': 'Open gates' }, h('h2', {}, 'Open gates'),
    run.open_gates.map((gate) => {
      const scope = h('select', { 'aria-label': 'Scope', id: `scope-${gate.gate_id}` }, h('option', { value: 'once' }, 'this once'), h('option', { value: 'run' }, 'for the rest of the run'))
      if (gate.kind === 'question') {
        const answer = h('input', { id: `answer-${gate.gate_id}`, 'aria-label': 'Answer', required: true })
        const form = h('form', { class: 'row', dataset: { gate: gate.gate_id } }, h('strong', {}, gate.prompt || gate.gate_id), answer, h('button', { type: 'submit', class: 'primary' }, 'Answer'))
        form.addEventListener('submit', (e) => { e.preventDefault(); resolve(gate, { decision: 'answer', answer: answer.value }) })
        return form
      }
      return h('div', { class: 'row', dataset: { gate: gate.gate_id } }, h('strong', {}, `${gate.kind.replaceAll('_', ' ')}: ${gate.prompt || gate.gate_id}`), scope,
        h('button', { type: 'button', class: 'primary', onclick: () => resolve(gate, { decision: 'approve', scope: scope.value }) }, 'Approve'),
        h('button', { type: 'button', class: 'danger', onclick: () => resolve(gate, { decision: 'deny', scope: scope.value }) }, 'Deny'))
    }))
}

function reviewPanel (run, review) {
  if (run.status !== 'awaiting_review') {
    if (!run.review) return null
    return h('section', { class: 'panel', id: 'review' }, h('h2', {}, 'Review'),
      h('p', {}, `${run.review.decision.replaceAll('_', ' ')} by ${run.review.reviewer}`, run.review.comment ? `: ${run.review.comment}` : ''))
  }
  const comment = h('textarea', { id: 'review-comment', placeholder: 'What should change, or why' })
  return h('section', { class: 'panel', id: 'review', 'aria-label': 'Review' }, h('h2', {}, 'Review'),
    h('label', { for: 'review-comment' }, 'Comment'), comment,
    h('div', { class: 'row' },
      h('button', { type: 'button', class: 'primary', onclick: () => review({ approved: true, comment: comment.value || undefined }) }, 'Approve'),
      h('button', { type: 'button', onclick: () => review({ approved: false, request_changes: true, comment: comment.value || undefined }) }, 'Request changes'),
      h('button', { type: 'button', class: 'danger', onclick: () => review({ approved: false, comment: comment.value || undefined }) }, 'Decline')))
}

function diffView (text) {
  return h('div', { class: 'diff', role: 'region', 'aria-label': 'Diff', tabindex: 0 }, text.split('\n').map((line) =>
    h('span', { class: line.startsWith('@@') ? 'hunk' : line.startsWith('+') && !line.startsWith('+++') ? 'add' : line.startsWith('-') && !line.startsWith('---') ? 'del' : '' }, line + '\n')))
}

async function filesPanel (runId) {
  const panel = h('section', { class: 'panel', id: 'files', 'aria-label': 'Changed files' }, h('h2', {}, 'Changed files'))
  let answer
  try { answer = await get(`/api/runs/${runId}/files`) } catch (e) {
    if (e.status !== 404) throw e
    panel.append(h('p', { class: 'muted' }, 'No branch to compare (no repository, or not pushed yet).'))
    return panel
  }
  const shown = h('div')
  panel.append(h('p', { class: 'muted' }, `Branch ${answer.branch}`),
    answer.files.length ? h('ul', {}, answer.files.map((f) => h('li', {}, h('button', {
      type: 'button',
      onclick: async () => shown.replaceChildren(h('h3', { class: 'mono' }, f.path), diffView((await call('GET', `/api/runs/${runId}/files/${f.path.split('/').map(encodeURIComponent).join('/')}`)).data))
    }, f.path), ` ${f.status} +${f.added} −${f.removed}`))) : h('p', { class: 'muted' }, 'No changes.'), shown)
  return panel
}

const AUDIT_AT_ONCE = 5000 // events: a longer run's audit (it reads them all) waits to be asked

async function auditPanel (runId, events) {
  const panel = h('section', { class: 'panel', id: 'audit', 'aria-label': 'Audit' }, h('h2', {}, 'Audit'))
  if (events > AUDIT_AT_ONCE) {
    const button = h('button', { type: 'button', id: 'verify' }, `Verify its history (${events} events)`)
    button.addEventListener('click', async () => {
      button.disabled = true
      panel.replaceWith(await auditPanel(runId, 0).catch((e) => h('p', { class: 'error' }, `Audit: ${e.message}`)))
    })
    panel.append(h('p', { class: 'muted' }, 'Checks the hash chain and the signed Merkle log. '), button)
    return panel
  }
  const audit = await get(`/api/runs/${runId}/audit`)
  const verdict = audit.valid ? 'Verified: the hash chain and the signed Merkle log agree.' : `Not valid: ${audit.first_bad.reason} at sequence ${audit.first_bad.sequence}`
  panel.append(h('p', { class: audit.valid ? '' : 'error', dataset: { valid: String(audit.valid) } }, verdict),
    h('p', { class: 'muted' }, `${audit.events} events; ` + (audit.inclusion ? `proved included in the checkpoint of ${audit.checkpoint.tree_size} events` : 'no checkpoint covers its last event yet')))
  return panel
}

export async function showRun (view, runId) {
  let run = await get(`/api/runs/${runId}`)
  const header = h('div')
  const sliderLabel = h('span', { id: 'slider-label', role: 'status' })
  const slider = h('input', { type: 'range', class: 'slider', id: 'time-slider', min: 1, max: run.last_sequence, value: run.last_sequence, 'aria-label': 'Show the run as it stood after event' })
  const live = h('button', { type: 'button', id: 'back-to-live', hidden: true }, 'Back to live')
  const panels = h('div')
  let travelled = 0 // the sequence the slider shows, 0 when live
  const timeline = new VirtualList({
    label: 'Timeline',
    height: '50vh',
    render: (event) => h('div', { dataset: { seq: event.sequence }, class: travelled && event.sequence > travelled ? 'future' : '' },
      h('span', { class: 'mono' }, String(event.sequence).padStart(6)), h('span', { class: 'muted mono' }, event.at.slice(11, 23)),
      h('strong', {}, event.type), h('span', { class: 'grow' }, summary(event)))
  })
  timeline.el.id = 'timeline'
  let plan = null
  const planSlot = h('div')
  function ensurePlan () {
    if (plan || !run.coordinator_status) return
    plan = planPanel(runId)
    planSlot.replaceChildren(plan.el)
  }
  ensurePlan()
  const problem = h('p', { class: 'error', role: 'alert', id: 'run-error' })
  view.show(header, problem, panels, planSlot,
    h('section', { 'aria-label': 'Timeline' }, h('h2', {}, 'Timeline'),
      h('div', { class: 'row' }, h('label', { for: 'time-slider' }, 'As of event'), sliderLabel, live), slider, timeline.el))

  async function act (verb) {
    try {
      const answer = await post(`/api/runs/${runId}/${verb}`, {})
      if (verb === 'retry') location.hash = `#/runs/${answer.run_id}`
      else refresh()
    } catch (e) { problem.textContent = e.message }
  }
  async function resolve (gate, body) {
    try { await post(`/api/runs/${runId}/gates/${encodeURIComponent(gate.gate_id)}`, body); refresh() } catch (e) { problem.textContent = e.message }
  }
  async function review (body) {
    try { await post(`/api/runs/${runId}/review`, body); refresh() } catch (e) { problem.textContent = e.message }
  }

  function drawHeader (shown) {
    header.replaceChildren(
      h('h1', {}, shown.task.split('\n')[0]),
      travelled ? h('p', { class: 'timetravel', role: 'status' }, `As it stood after event ${travelled} of ${run.last_sequence}`) : '',
      fields(shown), travelled ? '' : actions(shown, act))
  }
  // Each panel is built again only when what it shows changed, so that a comment or an
  // answer being typed survives the refreshes that events bring; the audit (it reads the
  // whole run) is read at first and once more when the run ends.
  const built = {}
  async function panel (name, key, build) {
    if (!built[name] || built[name].key !== key) built[name] = { key, el: await build() }
    return built[name].el
  }
  async function drawPanels () {
    const ended = TERMINAL.includes(run.status)
    const parts = [
      await panel('gates', JSON.stringify(run.open_gates), () => gatesPanel(run, resolve)),
      await panel('review', run.status + JSON.stringify(run.review), () => reviewPanel(run, review)),
      run.tree_hash || run.branch ? await panel('files', `${run.tree_hash} ${run.branch}`, () => filesPanel(runId)) : null,
      await panel('audit', String(ended), () => auditPanel(runId, run.last_sequence).catch((e) => h('p', { class: 'muted' }, `Audit: ${e.message}`)))
    ]
    if (!view.closed) panels.replaceChildren(...parts.filter(Boolean))
  }
  let atLeast = 0
  async function refreshOnce () {
    const fresh = await get(`/api/runs/${runId}`, {}, atLeast)
    if (view.closed) return
    run = fresh
    if (!travelled) { drawHeader(run); slider.max = run.last_sequence; slider.value = run.last_sequence; sliderLabel.textContent = `${run.last_sequence} (live)` } else slider.max = run.last_sequence
    await drawPanels()
    ensurePlan()
    if (plan) await plan.refresh(atLeast)
  }
  // One refresh at a time, in order; asked again meanwhile, it runs once more after.
  let running = null
  let again = false
  function refresh () {
    if (running) { again = true; return running }
    running = (async () => {
      do { again = false; await refreshOnce() } while (again && !view.closed)
    })().finally(() => { running = null })
    return running
  }
  const later = throttle(() => refresh().catch((e) => { problem.textContent = e.message }), 250)

  async function travel () {
    const n = Number(slider.value)
    if (n >= run.last_sequence) return backToLive()
    travelled = n
    live.hidden = false
    sliderLabel.textContent = `${n} of ${run.last_sequence}`
    const then = await get(`/api/runs/${runId}`, { at_sequence: n })
    if (travelled !== n || view.closed) return // moved on meanwhile
    drawHeader(then)
    timeline.scrollTo(n - 1)
  }
  function backToLive () {
    travelled = 0
    live.hidden = true
    drawHeader(run)
    slider.value = run.last_sequence
    sliderLabel.textContent = `${run.last_sequence} (live)`
    timeline.follow = true
    timeline.schedule()
  }
  slider.addEventListener('input', debounce(travel, 120))
  live.addEventListener('click', backToLive)

  drawHeader(run)
  sliderLabel.textContent = `${run.last_sequence} (live)`
  // The timeline starts at once; the panels (the audit reads the whole run) come beside it.
  const panelsDrawn = refresh().catch((e) => { problem.textContent = e.message })
  // The history in pages of 1,000 (one request each, drawn as each arrives: a long run
  // shows its first events at once), then the stream from the last one, live.
  let after = 0
  while (!view.closed) {
    const page = (await call('GET', `/api/runs/${runId}/events`, null, { after, limit: 1000 })).data
    if (page.events.length) {
      timeline.push(...page.events)
      after = page.events[page.events.length - 1].sequence
      atLeast = Math.max(atLeast, page.events[page.events.length - 1].position)
      timeline.el.dataset.last = String(after)
    }
    if (page.events.length < 1000) break
  }
  // The run's view may have been read before it caught up with the events just shown (its
  // projection lags the log a little): read it again up to them, or the header would keep
  // the older state until the next event, which may never come.
  if (after > run.last_sequence) later()
  view.keep(follow(`/api/runs/${runId}/stream`, {
    after,
    key: (event) => event.sequence,
    onState: (state) => setConnection(state),
    // The browser gave up on the stream: over if the run ended and every event is here.
    probe: async (last) => {
      const now = await get(`/api/runs/${runId}`)
      return TERMINAL.includes(now.status) && now.last_sequence <= last ? 'ended' : 'retry'
    },
    onEvent: (event) => {
      timeline.push(event)
      atLeast = Math.max(atLeast, event.position)
      timeline.el.dataset.last = String(event.sequence)
      later()
    },
    onDone: later
  }))
  await panelsDrawn
}
