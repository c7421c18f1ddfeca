// The editor page's regions (see web/README.md): a left sidebar (navigation: the outline; later
// search), the document in the middle, and a right-hand panel column where features add panels
// (people, AI suggestions, version history, export) by calling registerPanel. Feature panels live in
// src/features/<name>.ts and are loaded lazily (lazyPanel), so the editor's first screen stays small.
import type * as Y from 'yjs'
import type { EditorView } from '@codemirror/view'
import type { Role } from './api'
import { h, messageOf, notice } from './dom'
import type { PrdProvider } from './provider'

export interface PanelContext {
  prdId: string
  title: string
  username: string
  /** The caller's role now (it may change while the editor is open: see onRole). */
  role: () => Role
  /** May the caller edit now (owner/editor, and access not removed)? */
  canEdit: () => boolean
  /** Called with the new role whenever it changes; returns an unsubscribe. */
  onRole: (fn: (role: Role) => void) => () => void
  doc: Y.Doc
  ytext: Y.Text
  view: EditorView
  provider: PrdProvider
}

export interface Panel {
  id: string
  title: string
  region: 'sidebar' | 'panels'
  order: number
  /** Fills `body`; returns a cleanup. */
  mount: (body: HTMLElement, ctx: PanelContext) => (() => void) | undefined
}

/** What a feature module (src/features/<name>.ts) exports for lazyPanel. */
export interface FeatureModule {
  mount: (body: HTMLElement, ctx: PanelContext) => (() => void) | undefined
}

const registry: Panel[] = []

export function registerPanel (panel: Panel): void {
  const at = registry.findIndex(p => p.id === panel.id)
  if (at >= 0) registry.splice(at, 1)
  registry.push(panel)
}

/** A panel whose code is a separate chunk, fetched when the panel mounts (after the editor is up). */
export function lazyPanel (id: string, title: string, order: number, load: () => Promise<FeatureModule>,
  region: Panel['region'] = 'panels'): Panel {
  return {
    id,
    title,
    region,
    order,
    mount: (body, ctx) => {
      let cleanup: (() => void) | undefined
      let disposed = false
      body.setAttribute('aria-busy', 'true')
      load().then(module => {
        if (disposed) return
        body.removeAttribute('aria-busy')
        cleanup = module.mount(body, ctx)
      }, error => {
        body.removeAttribute('aria-busy')
        body.replaceChildren(notice(`This panel could not be loaded: ${messageOf(error)}`))
      })
      return () => { disposed = true; cleanup?.() }
    }
  }
}

const collapsedKey = (id: string): string => `prdtool:panel:${id}:collapsed`

function isCollapsed (id: string): boolean {
  try { return localStorage.getItem(collapsedKey(id)) === '1' } catch { return false }
}

function remember (id: string, collapsed: boolean): void {
  try {
    if (collapsed) localStorage.setItem(collapsedKey(id), '1')
    else localStorage.removeItem(collapsedKey(id))
  } catch { /* storage unavailable: the choice lasts for this page only */ }
}

/**
 * Mounts every registered panel of `region` into `host` (each a labelled <section> whose heading is a
 * button that folds it away — remembered per panel on this device); returns a cleanup. A folded panel
 * is still mounted (it keeps following the document), only hidden.
 */
export function mountPanels (region: Panel['region'], host: HTMLElement, ctx: PanelContext): () => void {
  const cleanups = registry.filter(p => p.region === region).sort((a, b) => a.order - b.order).map(panel => {
    const bodyId = `panel-${panel.id}-body`
    const body = h('div', { class: 'panel-body', id: bodyId })
    const toggle = h('button', { type: 'button', class: 'panel-toggle', 'aria-controls': bodyId }, panel.title,
      h('span', { class: 'panel-chevron', 'aria-hidden': 'true' }))
    const section = h('section', { class: `panel panel-${panel.id}`, 'aria-labelledby': `panel-${panel.id}-heading` },
      h('h2', { id: `panel-${panel.id}-heading`, class: 'panel-title' }, toggle), body)
    const show = (collapsed: boolean): void => {
      body.hidden = collapsed
      toggle.setAttribute('aria-expanded', String(!collapsed))
      section.classList.toggle('panel-collapsed', collapsed)
    }
    toggle.addEventListener('click', () => {
      const collapsed = !body.hidden
      show(collapsed)
      remember(panel.id, collapsed)
    })
    show(isCollapsed(panel.id))
    host.append(section)
    return panel.mount(body, ctx)
  })
  return () => cleanups.forEach(fn => fn?.())
}
