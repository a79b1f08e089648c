// A coordinator's work plan: its graph (a node per subtask coloured by status, an edge per
// dependency, then the assembly review), its children, and steering. The graph is laid out
// in columns by depth (the longest chain of dependencies before a node): plans are small,
// and this keeps the page free of a layout library.

import { get, post } from '../api.js'
import { h, badge } from '../dom.js'

const SVG = 'http://www.w3.org/2000/svg'
const COLOURS = {
  pending: '#eaeef2', waiting: '#eaeef2', blocked: '#fff8c5', dispatched: '#ddf4ff', running: '#ddf4ff',
  in_progress: '#ddf4ff', active: '#ddf4ff', awaiting_review: '#fff8c5', succeeded: '#dafbe1', done: '#dafbe1',
  completed: '#dafbe1', merged: '#dafbe1', assembled: '#dafbe1', failed: '#ffebe9', cancelled: '#ffebe9',
  abandoned: '#ffebe9', declined: '#ffebe9'
}

function svg (tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag)
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v))
  for (const child of children) el.append(child)
  return el
}

export function drawGraph (graph) {
  const depth = {}
  const incoming = {}
  for (const e of graph.edges) if (!e.loopback) (incoming[e.to] = incoming[e.to] || []).push(e.from)
  const visit = (id, seen = new Set()) => {
    if (depth[id] !== undefined) return depth[id]
    if (seen.has(id)) return 0
    seen.add(id)
    depth[id] = Math.max(-1, ...(incoming[id] || []).map((p) => visit(p, seen))) + 1
    return depth[id]
  }
  graph.nodes.forEach((n) => visit(n.id))
  const columns = {}
  for (const n of graph.nodes) (columns[depth[n.id]] = columns[depth[n.id]] || []).push(n)
  const W = 170; const H = 56; const GX = 60; const GY = 24
  const where = {}
  for (const [col, nodes] of Object.entries(columns)) {
    nodes.forEach((n, row) => { where[n.id] = { x: 10 + col * (W + GX), y: 10 + row * (H + GY) } })
  }
  const width = 20 + (Object.keys(columns).length) * (W + GX)
  const height = 20 + Math.max(...Object.values(columns).map((c) => c.length)) * (H + GY)
  const root = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'Work plan graph' },
    svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto' },
      svg('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#57606a' }))))
  for (const e of graph.edges) {
    const a = where[e.from]; const b = where[e.to]
    if (!a || !b) continue
    root.append(svg('line', { x1: a.x + W, y1: a.y + H / 2, x2: b.x, y2: b.y + H / 2, stroke: '#57606a', 'stroke-width': 1.5, 'marker-end': 'url(#arrow)', 'stroke-dasharray': e.loopback ? '4 3' : 'none' }))
  }
  for (const n of graph.nodes) {
    const p = where[n.id]
    const title = svg('title', {})
    title.textContent = `${n.label}: ${n.status}`
    const label = svg('text', { x: p.x + 8, y: p.y + 22 })
    label.textContent = n.label.length > 22 ? n.label.slice(0, 21) + '…' : n.label
    const state = svg('text', { x: p.x + 8, y: p.y + 42, 'font-weight': 600 })
    state.textContent = n.status.replaceAll('_', ' ')
    root.append(svg('g', { class: 'node', 'data-node': n.id, 'data-status': n.status }, title,
      svg('rect', { x: p.x, y: p.y, width: W, height: H, rx: 6, fill: COLOURS[n.status] || '#fff', stroke: '#57606a' }),
      label, state))
  }
  return root
}

// The coordinator's panel: graph, children, steering; `refresh(atLeast)` redraws it.
export function planPanel (runId) {
  const graphBox = h('div', { class: 'graph', id: 'plan-graph' })
  const children = h('div', { id: 'children' })
  const target = h('select', { id: 'steer-target' }, h('option', { value: '' }, 'every active child'))
  const kind = h('select', { id: 'steer-kind' }, ['amend', 'redirect', 'stop'].map((k) => h('option', { value: k }, k)))
  const instruction = h('textarea', { id: 'steer-instruction', required: true })
  const said = h('p', { role: 'status' })
  const form = h('form', { 'aria-label': 'Steering' },
    h('div', { class: 'row' }, h('label', { for: 'steer-kind' }, 'Kind'), kind, h('label', { for: 'steer-target' }, 'Target'), target),
    h('label', { for: 'steer-instruction' }, 'Instruction'), instruction,
    h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Send'), said))
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    try {
      const body = { kind: kind.value, instruction: instruction.value }
      if (target.value) body.target_child_run_id = target.value
      const answer = await post(`/api/runs/${runId}/steer`, body)
      said.textContent = `Sent (${answer.targets.length} target${answer.targets.length === 1 ? '' : 's'}).`
      instruction.value = ''
    } catch (e) { said.textContent = e.message }
  })
  const el = h('section', { class: 'panel', 'aria-label': 'Work plan' },
    h('h2', {}, 'Work plan'), graphBox, h('h2', {}, 'Children'), children, h('h2', {}, 'Steering'), form)

  async function refresh (atLeast) {
    const graph = await get(`/api/runs/${runId}/graph`, {}, atLeast)
    graphBox.replaceChildren(drawGraph(graph))
    let items = []
    try { items = (await get(`/api/runs/${runId}/children`, {}, atLeast)).items } catch (e) { if (e.status !== 404) throw e }
    children.replaceChildren(items.length
      ? h('table', {}, h('tr', {}, h('th', {}, 'Subtask'), h('th', {}, 'Child run'), h('th', {}, 'Status')),
        items.map((c) => h('tr', { dataset: { subtask: c.subtask_key } }, h('td', {}, c.subtask_key),
          h('td', {}, h('a', { href: `#/runs/${c.child_run_id}`, class: 'mono' }, c.child_run_id.slice(0, 8))),
          h('td', {}, badge(c.child_status)))))
      : h('p', { class: 'muted' }, 'No child runs yet.'))
    const chosen = target.value
    target.replaceChildren(h('option', { value: '' }, 'every active child'),
      items.map((c) => h('option', { value: c.child_run_id, selected: c.child_run_id === chosen }, `${c.subtask_key} (${c.child_status})`)))
  }
  return { el, refresh }
}
