// The compare dialog of the history panel: pick two versions, see what changed per section (each
// expandable) and in the whole document, inline or side by side. Additions and deletions are marked
// by +/− signs and <ins>/<del> (with words for screen readers), not only by colour; "Next change" /
// "Previous change" (or the N and P keys) move between changes.
import { request } from '../api'
import { h, messageOf, notice } from '../dom'
import { openDialog, type DialogParts } from './history-dialogs'
import {
  blocksOf, diffView, intraline, lineCounts, partners, sideBySide, tagOf, unterminatedTail,
  type DiffJson, type DiffLine, type DiffView, type ParsedDiff, type VersionRecord, type VersionWithText
} from './history-model'

export type Layout = 'inline' | 'side'
const LAYOUT_KEY = 'prdtool.history.layout'

function storedLayout (): Layout {
  try {
    return localStorage.getItem(LAYOUT_KEY) === 'side' ? 'side' : 'inline'
  } catch {
    return 'inline'
  }
}

const present = (...nodes: Array<Node | null>): Node[] => nodes.filter((n): n is Node => n !== null)
const SR = (text: string): HTMLElement => h('span', { class: 'hist-sr' }, text)

function lineContent (line: DiffLine, partner: DiffLine | undefined): Node[] {
  if (line.text === '') return [h('span', { class: 'hist-blank' }, ' ')]
  if (partner === undefined || line.kind === 'context') return [document.createTextNode(line.text)]
  // Mark the changed part of a line that has a counterpart on the other side.
  const [before, middle, after] = intraline(line.text, partner.text)
  if (middle === '' || middle === line.text) return [document.createTextNode(line.text)]
  return [document.createTextNode(before), h('mark', { class: 'hist-mark' }, middle), document.createTextNode(after)]
}

/** One line's marked-up text: <ins>/<del> with a visible sign and words for screen readers. */
function lineBody (line: DiffLine, partner: DiffLine | undefined): HTMLElement {
  const content = lineContent(line, partner)
  if (line.kind === 'add') return h('ins', { class: 'hist-text' }, SR('Added: '), ...content)
  if (line.kind === 'del') return h('del', { class: 'hist-text' }, SR('Removed: '), ...content)
  return h('span', { class: 'hist-text' }, ...content)
}

const SIGN: Record<DiffLine['kind'], string> = { add: '+', del: '\u2212', context: ' ' }

function inlineLine (line: DiffLine, partner: DiffLine | undefined): HTMLElement {
  return h('div', { class: `hist-line hist-${line.kind}` },
    h('span', { class: 'hist-no', 'aria-hidden': 'true' }, line.oldNo === undefined ? '' : String(line.oldNo)),
    h('span', { class: 'hist-no', 'aria-hidden': 'true' }, line.newNo === undefined ? '' : String(line.newNo)),
    h('span', { class: 'hist-sign', 'aria-hidden': 'true' }, SIGN[line.kind]),
    lineBody(line, partner))
}

function sideCell (line: DiffLine | undefined, side: 'old' | 'new', partner: DiffLine | undefined): HTMLElement {
  if (line === undefined) return h('div', { class: 'hist-cell hist-empty' })
  const no = side === 'old' ? line.oldNo : line.newNo
  return h('div', { class: `hist-cell hist-${line.kind}` },
    h('span', { class: 'hist-no', 'aria-hidden': 'true' }, no === undefined ? '' : String(no)),
    h('span', { class: 'hist-sign', 'aria-hidden': 'true' }, SIGN[line.kind]),
    lineBody(line, partner))
}

const range = (start: number, count: number): string =>
  count === 0 ? 'no lines' : count === 1 ? `line ${start}` : `lines ${start}–${start + count - 1}`

/** A parsed diff as DOM: hunks, and in each, runs of context and changes (changes focusable for navigation). */
export function renderDiff (diff: ParsedDiff, layout: Layout, fromTag: string, toTag: string): HTMLElement {
  const root = h('div', { class: `hist-code hist-layout-${layout}` })
  if (diff.hunks.length === 0) {
    root.append(h('p', { class: 'hint' }, 'No line of text changed here.'))
    return root
  }
  if (layout === 'side') {
    root.append(h('div', { class: 'hist-side-head', 'aria-hidden': 'true' }, h('div', {}, fromTag), h('div', {}, toTag)))
  }
  for (const hunk of diff.hunks) {
    const pairs = partners(hunk.lines)
    root.append(h('div', { class: 'hist-hunk-head' },
      `${fromTag} ${range(hunk.oldStart, hunk.oldLines)}; ${toTag} ${range(hunk.newStart, hunk.newLines)}`))
    for (const block of blocksOf(hunk.lines)) {
      const host = block.kind === 'change'
        ? h('div', { class: 'hist-change', tabindex: '-1' })
        : h('div', { class: 'hist-context' })
      if (layout === 'inline') {
        for (const line of block.lines) host.append(inlineLine(line, pairs.get(line)))
      } else {
        for (const row of sideBySide(block.lines)) {
          host.append(h('div', { class: 'hist-row2' },
            sideCell(row.left, 'old', row.left !== undefined ? pairs.get(row.left) : undefined),
            sideCell(row.right, 'new', row.right !== undefined ? pairs.get(row.right) : undefined)))
        }
      }
      root.append(host)
    }
  }
  return root
}

export interface DiffDialogOptions {
  prdId: string
  /** The versions to choose from (newest first). */
  versions: VersionRecord[]
  from: string
  to: string
  opener: HTMLElement | null
  /** A version with its Markdown (cached by the panel). */
  load: (version: string) => Promise<VersionWithText>
}

let diffDialogs = 0

export function openDiffDialog (opts: DiffDialogOptions): DialogParts {
  const uid = `hist-diff-${++diffDialogs}`
  const parts = openDialog({ title: 'Compare versions', className: 'hist-diff-dialog', opener: opts.opener })
  let layout = storedLayout()
  let current: DiffView | null = null
  let request_ = 0

  const option = (v: VersionRecord): HTMLOptionElement =>
    h('option', { value: v.version }, `${tagOf(v.version)} — ${v.summary.length > 60 ? `${v.summary.slice(0, 59)}…` : v.summary}`)
  const options = h('select', {}, ...opts.versions.map(option)) // built once, cloned for each select
  const select = (id: string, value: string): HTMLSelectElement => {
    const el = options.cloneNode(true) as HTMLSelectElement
    el.id = id
    if (!opts.versions.some(v => v.version === value)) el.prepend(h('option', { value }, tagOf(value)))
    el.value = value
    return el
  }
  const fromSel = select(`${uid}-from`, opts.from)
  const toSel = select(`${uid}-to`, opts.to)
  const radio = (value: Layout, label: string): HTMLElement => {
    const input = h('input', { type: 'radio', name: `${uid}-layout`, id: `${uid}-layout-${value}`, value, checked: layout === value })
    input.addEventListener('change', () => { if (input.checked) setLayout(value) })
    return h('span', { class: 'hist-radio' }, input, h('label', { for: input.id }, label))
  }
  const swap = h('button', { type: 'button', class: 'button', 'aria-label': 'Swap from and to' }, '⇄ Swap')
  swap.addEventListener('click', () => {
    const f = fromSel.value
    fromSel.value = toSel.value
    toSel.value = f
    void run()
  })
  const form = h('form', { class: 'hist-diff-form' },
    h('div', { class: 'field' }, h('label', { for: fromSel.id }, 'From (older)'), fromSel),
    h('div', { class: 'field' }, h('label', { for: toSel.id }, 'To (newer)'), toSel),
    swap,
    h('fieldset', { class: 'hist-layout' }, h('legend', {}, 'Layout'), radio('inline', 'Inline'), radio('side', 'Side by side')))
  form.addEventListener('submit', event => { event.preventDefault(); void run() })
  fromSel.addEventListener('change', () => { void run() })
  toSel.addEventListener('change', () => { void run() })

  const prev = h('button', { type: 'button', class: 'button', 'aria-keyshortcuts': 'P' }, '↑ Previous change')
  const next = h('button', { type: 'button', class: 'button', 'aria-keyshortcuts': 'N' }, '↓ Next change')
  prev.addEventListener('click', () => move(-1))
  next.addEventListener('click', () => move(1))
  const nav = h('div', { class: 'hist-diff-nav' }, prev, next, h('span', { class: 'hint' }, 'Keys: N next change, P previous change.'))
  const status = h('p', { class: 'hist-diff-status', role: 'status', 'aria-live': 'polite' })
  const result = h('div', { class: 'hist-diff-result' })
  parts.body.append(form, nav, status, result)
  fromSel.focus()

  let at = -1
  function changes (): HTMLElement[] {
    return [...result.querySelectorAll<HTMLElement>('.hist-change')]
  }
  function move (step: number): void {
    const all = changes()
    if (all.length === 0) {
      status.textContent = 'There is no change to go to.'
      return
    }
    const focused = all.findIndex(el => el === document.activeElement)
    at = focused >= 0 ? focused + step : at + step
    at = Math.max(0, Math.min(all.length - 1, at))
    const el = all[at]
    const details = el.closest('details')
    if (details !== null && !details.open) details.open = true
    el.focus()
    el.scrollIntoView({ block: 'center' })
    status.textContent = `Change ${at + 1} of ${all.length}${details?.dataset.heading !== undefined ? ` (${details.dataset.heading})` : ''}.`
  }
  parts.dialog.addEventListener('keydown', event => {
    const target = event.target as HTMLElement
    if (event.altKey || event.ctrlKey || event.metaKey || target.closest('input, select, textarea') !== null) return
    if (event.key === 'n' || event.key === 'N') { event.preventDefault(); move(1) }
    if (event.key === 'p' || event.key === 'P') { event.preventDefault(); move(-1) }
  })

  function setLayout (next: Layout): void {
    layout = next
    try { localStorage.setItem(LAYOUT_KEY, next) } catch { /* private mode: not remembered */ }
    if (current !== null) show(current, true)
  }

  function show (view: DiffView, keepOpen = false): void {
    const fromTag = tagOf(view.from)
    const toTag = tagOf(view.to)
    const wasOpen = new Set([...result.querySelectorAll<HTMLDetailsElement>('details[open]')].map(d => d.dataset.key))
    at = -1
    if (view.sections.length === 0 && view.whole.hunks.length === 0) {
      result.replaceChildren(h('p', { class: 'hist-diff-summary' }, `No visible change between ${fromTag} and ${toTag}.`))
      status.textContent = `No visible change between ${fromTag} and ${toTag}.`
      return
    }
    const whole = lineCounts(view.whole)
    const sections = view.sections.map(s => {
      const key = `s${s.key}`
      const details = h('details', { class: 'hist-section', 'data-action': s.action, 'data-key': key, 'data-heading': s.heading },
        h('summary', {},
          h('span', { class: `hist-action hist-action-${s.structural ? 'structure' : 'content'}` }, s.actionText),
          ' ', h('span', { class: 'hist-section-title' }, s.heading),
          s.counts !== '' ? h('span', { class: 'hist-counts' }, ` (${s.counts})`) : null),
        h('p', { class: 'hint' }, s.summary),
        renderDiff(s.diff, layout, fromTag, toTag))
      details.open = keepOpen ? wasOpen.has(key) : view.sections.length <= 4
      return h('li', {}, details)
    })
    const wholeDetails = h('details', { class: 'hist-whole', 'data-key': 'whole', 'data-heading': 'whole document' },
      h('summary', {}, `Whole document (${whole.added} ${whole.added === 1 ? 'line' : 'lines'} added, ${whole.removed} removed)`),
      renderDiff(view.whole, layout, fromTag, toTag))
    wholeDetails.open = keepOpen ? wasOpen.has('whole') : view.sections.length === 0
    result.replaceChildren(...present(
      h('p', { class: 'hist-diff-summary' },
        h('span', { class: `hist-badge hist-badge-kind-${view.kind}` }, view.kindText), ' ',
        `${fromTag} → ${toTag}: ${view.summary}`),
      view.uneven ? notice('Part of this diff could not be lined up exactly; it is shown as the server sent it.', 'info') : null,
      h('h3', { class: 'hist-subhead' }, view.sections.length === 0 ? 'No section changed' : `Sections changed (${view.sections.length})`),
      view.sections.length > 0 ? h('ul', { class: 'hist-sections' }, ...sections) : null,
      wholeDetails))
    if (!keepOpen) {
      status.textContent = `${fromTag} → ${toTag}: ${view.sections.length} ${view.sections.length === 1 ? 'section' : 'sections'} changed, ` +
        `${whole.added} ${whole.added === 1 ? 'line' : 'lines'} added, ${whole.removed} removed.`
    }
  }

  async function run (): Promise<void> {
    const from = fromSel.value
    const to = toSel.value
    const mine = ++request_
    result.setAttribute('aria-busy', 'true')
    status.textContent = `Comparing ${tagOf(from)} with ${tagOf(to)}…`
    result.replaceChildren(h('p', { class: 'loading' }, `Comparing ${tagOf(from)} with ${tagOf(to)}…`))
    try {
      const json = await request<DiffJson>('GET', `/api/prds/${encodeURIComponent(opts.prdId)}/diff?${new URLSearchParams({ from, to }).toString()}`)
      let view = diffView(json)
      // difflib glues an unterminated last line to what follows it: separate them with the old text's tail.
      if (view.uneven) view = diffView(json, unterminatedTail((await opts.load(from)).markdown))
      if (mine !== request_ || !parts.dialog.open) return
      current = view
      show(view)
    } catch (error) {
      if (mine !== request_) return
      current = null
      status.textContent = ''
      result.replaceChildren(notice(`Could not compare ${tagOf(from)} with ${tagOf(to)}: ${messageOf(error)}`),
        h('button', { type: 'button', class: 'button', onclick: () => { void run() } }, 'Try again'))
    } finally {
      if (mine === request_) result.removeAttribute('aria-busy')
    }
  }
  void run()
  return parts
}
