// Runs: a live, filterable list (status, project), newest first, windowed so that a
// thousand runs stay quick. It follows the caller's global stream and reads the list
// again (including that event) when a run changes.

import { get, read } from '../api.js'
import { follow } from '../stream.js'
import { h, badge, when, throttle } from '../dom.js'
import { VirtualList } from '../vlist.js'
import { setConnection } from '../app.js'

const STATUSES = ['pending', 'in_progress', 'paused', 'awaiting_review', 'merging', 'completed',
  'merged', 'declined', 'merge_failed', 'failed', 'cancelled']
const PAGES = 4 // 4 × 500 runs at most

export async function showRuns (view) {
  const params = new URLSearchParams(location.hash.split('?')[1] || '')
  const status = h('select', { id: 'filter-status' }, h('option', { value: '' }, 'any'),
    STATUSES.map((s) => h('option', { value: s, selected: params.get('status') === s }, s.replaceAll('_', ' '))))
  const project = h('select', { id: 'filter-project' }, h('option', { value: '' }, 'any'))
  const count = h('span', { class: 'muted', role: 'status' })
  const list = new VirtualList({
    label: 'Runs',
    className: 'runs-list',
    render: (run) => h('div', { dataset: { run: run.run_id } },
      badge(run.status),
      h('a', { href: `#/runs/${run.run_id}` }, run.run_id.slice(0, 8)),
      h('span', { class: 'grow' }, run.task.split('\n')[0]),
      h('span', { class: 'muted' }, when(run.updated_at)))
  })
  view.show(
    h('h1', {}, 'Runs'),
    h('div', { class: 'row' }, h('label', { for: 'filter-status' }, 'Status'), status,
      h('label', { for: 'filter-project' }, 'Project'), project, count),
    list.el)
  const projects = (await get('/api/projects')).items || []
  for (const p of projects) project.append(h('option', { value: p.project_id, selected: params.get('project') === p.project_id }, p.name))

  let atLeast = 0
  let asOf = 0 // the position the list includes
  async function load () {
    const query = { limit: 500, status: status.value || undefined, project_id: project.value || undefined }
    let items = []
    let cursor = null
    for (let page = 0; page < PAGES; page++) {
      const answer = await read('/api/runs', cursor ? { ...query, cursor } : query, atLeast)
      if (!page) asOf = answer.position
      items = items.concat(answer.data.items)
      cursor = answer.data.next_cursor
      if (!cursor) break
    }
    list.follow = false
    list.set(items)
    count.textContent = `${items.length} run${items.length === 1 ? '' : 's'}${cursor ? ' (the newest)' : ''}`
  }
  const reload = throttle(load, 300)
  for (const select of [status, project]) {
    select.addEventListener('change', () => {
      const q = new URLSearchParams()
      if (status.value) q.set('status', status.value)
      if (project.value) q.set('project', project.value)
      history.replaceState(null, '', `#/runs${q.toString() ? '?' + q : ''}`)
      load()
    })
  }
  await load()
  view.keep(follow('/api/events/stream', {
    after: asOf, // every change after what the list includes
    probe: async () => { await get('/api/runs', { limit: 1 }); return 'retry' },
    key: (event) => event.position,
    onState: (state) => setConnection(state === 'live' ? 'live' : state),
    onEvent: (event) => {
      if (!event.run_id) return
      atLeast = Math.max(atLeast, event.position)
      reload()
    }
  }))
}
