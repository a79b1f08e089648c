// A windowed list: only the rows in view (and a few around) are in the page, so a list of
// 50,000 rows scrolls and updates as fast as one of 50. Rows have one fixed height.

import { h } from './dom.js'

export class VirtualList {
  constructor ({ rowHeight = 28, height = '60vh', render, label, className = '' }) {
    this.items = []
    this.rowHeight = rowHeight
    this.render = render
    this.spacer = h('div', { class: 'spacer' })
    this.el = h('div', { class: `list ${className}`, role: 'list', 'aria-label': label, tabindex: 0 }, this.spacer)
    this.el.style.height = height
    // The reader scrolled: follow the newest rows again only once back at the bottom.
    this.el.addEventListener('scroll', () => { this.follow = this.atBottom(); this.schedule() })
    this.follow = true // keep the newest row in view while the reader is at the bottom
    this.frame = null
  }

  set (items) {
    this.items = items
    this.schedule()
  }

  atBottom () {
    return this.el.scrollTop + this.el.clientHeight >= this.el.scrollHeight - this.rowHeight * 2
  }

  push (...items) {
    this.items.push(...items)
    this.schedule()
  }

  scrollTo (index) {
    this.el.scrollTop = Math.max(0, index * this.rowHeight - this.el.clientHeight / 2)
    this.follow = false
    this.schedule()
  }

  schedule () {
    if (this.frame) return
    this.frame = requestAnimationFrame(() => { this.frame = null; this.draw() })
  }

  draw () {
    const total = this.items.length
    this.spacer.style.height = `${total * this.rowHeight}px`
    if (this.follow) this.el.scrollTop = this.el.scrollHeight
    const view = this.el.clientHeight || 600
    const first = Math.max(0, Math.floor(this.el.scrollTop / this.rowHeight) - 10)
    const last = Math.min(total, Math.ceil((this.el.scrollTop + view) / this.rowHeight) + 10)
    const rows = []
    for (let i = first; i < last; i++) {
      const row = this.render(this.items[i], i)
      row.classList.add('rowitem')
      row.setAttribute('role', 'listitem')
      row.style.top = `${i * this.rowHeight}px`
      rows.push(row)
    }
    this.spacer.replaceChildren(...rows)
    this.el.dataset.count = String(total)
  }
}
