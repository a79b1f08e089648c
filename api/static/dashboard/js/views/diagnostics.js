// The engine: head position, each read model's position and lag, subscribers. Read every
// two seconds.

import { get } from '../api.js'
import { h } from '../dom.js'

export async function showDiagnostics (view) {
  const box = h('div', { id: 'diagnostics' })
  view.show(h('h1', {}, 'Diagnostics'), box)
  async function draw () {
    const d = await get('/api/diagnostics')
    const models = Object.entries(d.read_models || {})
    box.replaceChildren(
      h('dl', { class: 'fields' },
        h('dt', {}, 'Head position'), h('dd', { id: 'head-position' }, d.head_position),
        h('dt', {}, 'Change feed'), h('dd', {}, `${d.change_feed.position} (lag ${d.change_feed.lag})`),
        h('dt', {}, 'Subscribers'), h('dd', {}, `${d.subscribers} (dropped ${d.subscribers_dropped})`),
        h('dt', {}, 'Worker'), h('dd', {}, `${d.worker.role}${d.worker.leader ? ', leading' : ''}`)),
      h('h2', {}, 'Read models'),
      h('table', {}, h('tr', {}, h('th', {}, 'Read model'), h('th', {}, 'Position'), h('th', {}, 'Lag')),
        models.map(([name, m]) => h('tr', {}, h('td', {}, name), h('td', {}, m.position), h('td', {}, m.lag)))))
  }
  await draw()
  const timer = setInterval(() => draw().catch(() => {}), 2000)
  view.keep({ stop: () => clearInterval(timer) })
}
