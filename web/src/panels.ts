// The editor page's regions (see web/README.md): a left sidebar (navigation: the outline; later
// search), the document in the middle, and a right-hand panel column where features add panels
// (people now; AI suggestions, version history, import/export later) by calling registerPanel.
import { h } from './dom'

export interface PanelContext { prdId: string, role: string }
export interface Panel {
  id: string
  title: string
  region: 'sidebar' | 'panels'
  order: number
  /** Fills `body`; returns a cleanup. */
  mount: (body: HTMLElement, ctx: PanelContext) => (() => void) | undefined
}

const registry: Panel[] = []

export function registerPanel (panel: Panel): void {
  const at = registry.findIndex(p => p.id === panel.id)
  if (at >= 0) registry.splice(at, 1)
  registry.push(panel)
}

/** Mounts every registered panel of `region` into `host` (each a labelled <section>); returns a cleanup. */
export function mountPanels (region: Panel['region'], host: HTMLElement, ctx: PanelContext): () => void {
  const cleanups = registry.filter(p => p.region === region).sort((a, b) => a.order - b.order).map(panel => {
    const body = h('div', { class: 'panel-body' })
    host.append(h('section', { class: `panel panel-${panel.id}`, 'aria-labelledby': `panel-${panel.id}-heading` },
      h('h2', { id: `panel-${panel.id}-heading`, class: 'panel-title' }, panel.title), body))
    return panel.mount(body, ctx)
  })
  return () => cleanups.forEach(fn => fn?.())
}
