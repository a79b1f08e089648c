// Projects, and a project's board: columns of tasks in rank order. Drag a card to reorder
// it or move it to another column (or use its buttons, from the keyboard); start a ready
// task; auto-pickup settings. The board follows the project's events live.

import { get, read, post, put } from '../api.js'
import { follow } from '../stream.js'
import { h, badge, throttle } from '../dom.js'
import { setConnection } from '../app.js'

export async function showProjects (view) {
  const { items } = await get('/api/projects')
  const name = h('input', { id: 'project-name', required: true })
  const repo = h('input', { id: 'project-repo', placeholder: '/path/to/repository (optional)' })
  const problem = h('p', { class: 'error', role: 'alert' })
  const form = h('form', { class: 'row', 'aria-label': 'New project' }, h('label', { for: 'project-name' }, 'New project'), name,
    h('label', { for: 'project-repo' }, 'Repository'), repo, h('button', { type: 'submit' }, 'Create'), problem)
  form.addEventListener('submit', async (e) => {
    e.preventDefault()
    try {
      const body = { name: name.value }
      if (repo.value) body.repository_path = repo.value
      const made = await post('/api/projects', body)
      location.hash = `#/projects/${made.project_id}`
    } catch (err) { problem.textContent = err.message }
  })
  view.show(h('h1', {}, 'Projects'), form,
    items.length ? h('ul', {}, items.map((p) => h('li', {}, h('a', { href: `#/projects/${p.project_id}` }, p.name), ' ',
      h('span', { class: 'muted' }, p.repository_path || '')))) : h('p', { class: 'muted' }, 'No projects yet.'))
}

const MOVABLE = { backlog: 'backlog', ready: 'ready' }

export async function showBoard (view, projectId) {
  const project = await get(`/api/projects/${projectId}`)
  const problem = h('p', { class: 'error', role: 'alert', id: 'board-error' })
  const columnsBox = h('div', { class: 'board', id: 'board' })
  const title = h('input', { id: 'task-title', required: true })
  const add = h('form', { class: 'row', 'aria-label': 'New task' }, h('label', { for: 'task-title' }, 'New task'), title, h('button', { type: 'submit' }, 'Add to backlog'))
  const pickup = h('input', { type: 'checkbox', id: 'auto-pickup' })
  const most = h('input', { type: 'number', id: 'max-runs', min: 1, max: 50 })
  const settingsForm = h('form', { class: 'row', 'aria-label': 'Auto-pickup settings' },
    h('label', { for: 'auto-pickup' }, 'Start ready tasks automatically'), pickup,
    h('label', { for: 'max-runs' }, 'At most running'), most, h('button', { type: 'submit' }, 'Save settings'))
  view.show(h('h1', {}, `Board: ${project.name}`),
    h('p', {}, h('a', { href: `#/runs?project=${projectId}` }, 'This project\'s runs')), add, settingsForm, problem, columnsBox)

  const act = async (fn) => { try { problem.textContent = ''; await fn(); await draw() } catch (e) { problem.textContent = e.message } }
  const tasks = `/api/projects/${projectId}/backlog/tasks`
  add.addEventListener('submit', (e) => { e.preventDefault(); act(async () => { await post(tasks, { title: title.value }); title.value = '' }) })
  settingsForm.addEventListener('submit', (e) => {
    e.preventDefault()
    act(() => put(`/api/projects/${projectId}/backlog/settings`, { auto_pickup: pickup.checked, max_concurrent_runs: most.value ? Number(most.value) : null }))
  })

  let dragged = null // the task being dragged: only a drag that started on a card moves one
  // Dropped on a card: into its place (before it when coming from above or from another
  // column, after it when coming from below). Dropped on a column's empty space: to the
  // bottom of that column.
  async function moveTo (task, column, onto, list) {
    if (task.column !== column) {
      if (!MOVABLE[column]) throw new Error(`A task cannot be moved to ${column.replace('_', ' ')} by hand.`)
      await post(`${tasks}/${task.task_id}/${column}`, {}) // to the bottom
      if (onto) await post(`${tasks}/${task.task_id}/reorder`, { before_task_id: onto.task_id })
      return
    }
    if (!onto) {
      const bottom = list[list.length - 1]
      if (bottom && bottom.task_id !== task.task_id) await post(`${tasks}/${task.task_id}/reorder`, { after_task_id: bottom.task_id })
      return
    }
    if (onto.task_id === task.task_id) return
    const downward = list.indexOf(task) < list.indexOf(onto)
    await post(`${tasks}/${task.task_id}/reorder`, downward ? { after_task_id: onto.task_id } : { before_task_id: onto.task_id })
  }
  function card (task, column, list) {
    const index = list.indexOf(task)
    const buttons = [
      index > 0 ? h('button', { type: 'button', 'aria-label': `Move ${task.title} up`, onclick: () => act(() => post(`${tasks}/${task.task_id}/reorder`, { before_task_id: list[index - 1].task_id })) }, '↑') : '',
      index < list.length - 1 ? h('button', { type: 'button', 'aria-label': `Move ${task.title} down`, onclick: () => act(() => post(`${tasks}/${task.task_id}/reorder`, { after_task_id: list[index + 1].task_id })) }, '↓') : '',
      column === 'backlog' ? h('button', { type: 'button', onclick: () => act(() => post(`${tasks}/${task.task_id}/ready`, {})) }, 'Ready') : '',
      column === 'ready' ? h('button', { type: 'button', onclick: () => act(() => post(`${tasks}/${task.task_id}/backlog`, {})) }, 'Backlog') : '',
      column === 'ready' || task.last_failure ? h('button', { type: 'button', class: 'primary', onclick: () => act(() => post(`${tasks}/${task.task_id}/start`, {})) }, 'Start') : ''
    ]
    const el = h('article', { class: 'card', draggable: 'true', dataset: { task: task.task_id }, 'aria-label': task.title },
      h('div', {}, h('strong', {}, task.title)),
      task.run ? h('div', {}, h('a', { href: `#/runs/${task.run.run_id}` }, 'run'), ' ', badge(task.run.status)) : '',
      task.last_failure ? h('div', { class: 'error' }, `last run: ${task.last_failure.category}`) : '',
      h('div', { class: 'actions' }, buttons))
    el.addEventListener('dragstart', (e) => { dragged = task; e.dataTransfer.setData('text/plain', task.task_id); e.dataTransfer.effectAllowed = 'move' })
    el.addEventListener('dragend', () => { dragged = null })
    el.addEventListener('dragover', (e) => e.preventDefault())
    el.addEventListener('drop', (e) => {
      e.preventDefault()
      e.stopPropagation()
      el.closest('.column').classList.remove('over')
      if (dragged) { const moving = dragged; dragged = null; act(() => moveTo(moving, column, task, list)) }
    })
    return el
  }
  let settingsShown = false
  let asOf = 0
  async function draw (atLeast = 0) {
    if (dragged) return later() // not under the reader's hand: after the drop
    const answer = await read(`/api/projects/${projectId}/board`, {}, atLeast)
    const board = answer.data
    asOf = Math.max(asOf, answer.position)
    if (!settingsShown && board.settings) { // once: never over what the reader is typing
      settingsShown = true
      pickup.checked = Boolean(board.settings.auto_pickup)
      most.value = board.settings.max_concurrent_runs || ''
    }
    columnsBox.replaceChildren(...board.columns.map((column) => {
      const el = h('section', { class: 'column', dataset: { column: column.name }, 'aria-label': column.name.replace('_', ' ') },
        h('h2', {}, `${column.name.replace('_', ' ')} (${column.tasks.length})`), column.tasks.map((t) => card(t, column.name, column.tasks)))
      el.addEventListener('dragover', (e) => { e.preventDefault(); el.classList.add('over') })
      el.addEventListener('dragleave', () => el.classList.remove('over'))
      el.addEventListener('drop', (e) => {
        e.preventDefault()
        el.classList.remove('over')
        if (dragged) { const moving = dragged; dragged = null; act(() => moveTo(moving, column.name, null, column.tasks)) }
      })
      return el
    }))
  }
  let newest = 0
  const later = throttle(() => draw(newest).catch((e) => { problem.textContent = e.message }), 250)
  await draw()
  view.keep(follow(`/api/events/stream?project_id=${projectId}`, {
    after: asOf, // every change after what the board includes
    probe: async () => { await get('/api/runs', { limit: 1 }); return 'retry' },
    key: (event) => event.position,
    onState: setConnection,
    onEvent: (event) => { newest = Math.max(newest, event.position); later() }
  }))
}
