// The dashboard: sign-in, then a view per address (#/runs, #/runs/<id>, #/projects,
// #/projects/<id>, #/diagnostics). Every action is an ordinary API call (api.js).

import { call, onUnauthorized } from './api.js'
import { h } from './dom.js'
import { View } from './view.js'
import { showRuns } from './views/runs.js'
import { showRun } from './views/run.js'
import { showProjects, showBoard } from './views/board.js'
import { showDiagnostics } from './views/diagnostics.js'

const main = document.getElementById('main')
const signOut = document.getElementById('sign-out')
let view = null // the page being shown (view.js): closed when the reader goes elsewhere

export function setConnection (text) {
  document.getElementById('connection').textContent = text
}

function signInForm () {
  const error = h('p', { class: 'error', role: 'alert' })
  const key = h('input', { id: 'key', name: 'key', type: 'password', autocomplete: 'current-password', required: true })
  const form = h('form', { class: 'sign-in panel', 'aria-label': 'Sign in' },
    h('h1', {}, 'Sign in'),
    h('label', { for: 'key' }, 'API key'),
    key,
    h('p', { class: 'muted' }, 'A user key; press Enter. The page keeps a session cookie, never the key.'),
    error)
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    try {
      await call('POST', '/api/session', { key: key.value })
      route()
    } catch (e) {
      error.textContent = e.status === 401 || e.status === 403 ? 'That key was not accepted.' : e.message
    }
  })
  return { form, key }
}

function showSignIn () {
  if (view) view.close()
  view = null
  signOut.hidden = true
  setConnection('')
  const { form, key } = signInForm()
  main.replaceChildren(form)
  key.focus()
}

async function route () {
  if (view) view.close()
  const here = view = new View(main)
  const path = location.hash.replace(/^#/, '').split('?')[0] || '/runs'
  const parts = path.split('/').filter(Boolean)
  try {
    await call('GET', '/api/runs', null, { limit: 1 }) // signed in? (401 otherwise)
    if (here.closed) return
    signOut.hidden = false
    if (parts[0] === 'runs' && parts[1]) await showRun(here, parts[1])
    else if (parts[0] === 'projects' && parts[1]) await showBoard(here, parts[1])
    else if (parts[0] === 'projects') await showProjects(here)
    else if (parts[0] === 'diagnostics') await showDiagnostics(here)
    else await showRuns(here)
  } catch (e) {
    if (here.closed) return
    if (e.status === 401) return showSignIn()
    here.show(h('p', { class: 'error', role: 'alert' }, `Could not load this page: ${e.message}`))
  }
}

onUnauthorized(() => { if (!document.querySelector('form.sign-in')) showSignIn() })
signOut.addEventListener('click', async () => {
  try { await call('DELETE', '/api/session') } catch (e) { /* signed out either way */ }
  showSignIn()
})
window.addEventListener('hashchange', route)
route()
