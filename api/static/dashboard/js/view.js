// One visit to a page of the dashboard: what it shows and what it opened (streams,
// timers). Going elsewhere closes it at once, even while it is still loading: what it
// opens after that is stopped as soon as it is opened, and what it would show is dropped.

export class View {
  constructor (main) {
    this.main = main
    this.closed = false
    this.stops = []
  }

  show (...nodes) {
    if (!this.closed) this.main.replaceChildren(...nodes)
  }

  keep (stoppable) {
    if (this.closed) stoppable.stop()
    else this.stops.push(stoppable)
    return stoppable
  }

  close () {
    this.closed = true
    for (const s of this.stops) s.stop()
    this.stops = []
  }
}
