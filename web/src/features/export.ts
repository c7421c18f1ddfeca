// The editor's Export panel (docs/import-export.md): a format (PDF, Word, HTML, Markdown, Confluence),
// a version (the document now, or one from GET /api/prds/{id}/versions), an Export button. Each
// export is POST /api/prds/{id}/exports (202 {exportId}); the requester's connections to the PRD get
// {"action":"notice","type":"export.ready"|"export.failed",...}, and GET /api/exports/{id} is polled
// with backoff in case the notice never comes (a reconnect, another tab). When it is done: the
// download link (file name, when the link expires) or "Open in Confluence", plus warnings; errors in
// words. Anyone who may read the PRD may export it (viewers too), so the panel shows for every role.
import './export.css'
import { ApiError, request } from '../api'
import { h, messageOf } from '../dom'
import type { PanelContext } from '../panels'
import { backoffDelay } from '../provider'

export type ExportFormat = 'pdf' | 'docx' | 'html' | 'markdown' | 'confluence'

export const FORMATS: ReadonlyArray<{ id: ExportFormat, label: string, hint: string }> = [
  { id: 'pdf', label: 'PDF', hint: 'for reading and printing' },
  { id: 'docx', label: 'Word', hint: '.docx, with heading styles' },
  { id: 'html', label: 'HTML', hint: 'one standalone page' },
  { id: 'markdown', label: 'Markdown', hint: 'the text as it is' },
  { id: 'confluence', label: 'Confluence', hint: 'published to the team\'s space' }
]
const FORMAT_LABEL: Record<string, string> = Object.fromEntries(FORMATS.map(f => [f.id, f.label]))

export interface ExportBody {
  exportId: string
  status: 'queued' | 'running' | 'done' | 'failed'
  format?: string
  version?: string | null
  url?: string
  /** The file's name (newer servers; else read from the link's path). */
  filename?: string | null
  expiresAt?: number
  expired?: boolean
  warnings?: string[]
  pageId?: string
  pageVersion?: number
  error?: { code?: string, message?: string } | null
}

export interface ExportNotice {
  type: 'export.ready' | 'export.failed'
  exportId: string
  format?: string
  url?: string | null
  expiresAt?: number | null
  error?: { code?: string, message?: string } | null
}

// ---------------------------------------------------------------- pure parts

/** The file name in a presigned link's path: exports/<id>/<title>-v<version>.<ext>. */
export function fileNameOf (url: string): string | null {
  try {
    const last = new URL(url).pathname.split('/').pop() ?? ''
    const name = decodeURIComponent(last)
    return name !== '' ? name : null
  } catch {
    return null
  }
}

const sentence = (text: string): string => {
  const t = text.trim()
  if (t === '') return t
  // "the PDF is…" → "The PDF is…", but a file name stays as it is ("fake.docx is…")
  const capital = /^[a-z]+(?=[\s,:;]|$)/.test(t) ? t[0].toUpperCase() + t.slice(1) : t
  return /[.!?]$/.test(capital) ? capital : `${capital}.`
}

const ERROR_TEXT: Record<string, string> = {
  confluence_not_configured: 'Publishing to Confluence is not set up for this workspace: an administrator has to connect a Confluence site first.',
  confluence_auth: 'Confluence refused our credentials: an administrator has to renew the Confluence connection.',
  confluence_unavailable: 'Confluence did not answer in time. Try again in a few minutes.',
  confluence_title_taken: 'Another Confluence page already has this PRD\'s title: rename the PRD or that page, then export again.',
  version_not_found: 'That version does not exist (any more): pick another one.',
  prd_not_found: 'This PRD does not exist or you no longer have access to it.',
  not_found: 'This PRD does not exist or you no longer have access to it.',
  internal_error: 'The export failed on our side. Try again.'
}

/** Words for an export that was refused or failed. */
export function exportErrorText (code: string | undefined, message: string | undefined): string {
  const known = code !== undefined ? ERROR_TEXT[code] : undefined
  if (known !== undefined) return known
  if (message !== undefined && message.trim() !== '') return sentence(message)
  return 'The export failed. Try again.'
}

export function formatExpiry (expiresAt: number, now = Date.now(), locale?: string): string {
  const when = new Date(expiresAt * 1000)
  const hours = Math.round((expiresAt * 1000 - now) / 3_600_000)
  const text = new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'short' }).format(when)
  return hours >= 1 ? `The link works until ${text} (${hours} hour${hours === 1 ? '' : 's'}).` : `The link works until ${text}.`
}

export type ResultView =
  | { state: 'running', text: string }
  | { state: 'failed', text: string }
  | { state: 'expired', text: string }
  | { state: 'ready', kind: 'file', url: string, fileName: string, linkText: string, expiry: string | null, warnings: string[] }
  | { state: 'ready', kind: 'confluence', url: string, linkText: string, pageVersion: number | null, warnings: string[] }

/** What one export shows, from GET /api/exports/{id} or an export notice. */
export function resultView (body: Partial<ExportBody> & { status?: string, type?: string }, now = Date.now()): ResultView {
  const format = body.format ?? ''
  const label = FORMAT_LABEL[format] ?? format.toUpperCase()
  const failed = body.status === 'failed' || body.type === 'export.failed'
  const done = body.status === 'done' || body.type === 'export.ready'
  if (failed) return { state: 'failed', text: exportErrorText(body.error?.code, body.error?.message) }
  if (!done) {
    return { state: 'running', text: body.status === 'running' ? `Making the ${label}…` : 'Waiting in the queue…' }
  }
  const warnings = body.warnings ?? []
  if (typeof body.url !== 'string' || body.url === '') {
    return body.expired === true
      ? { state: 'expired', text: 'The download link has expired (links last 24 hours): export again.' }
      : { state: 'failed', text: 'The export finished without a link. Try again.' }
  }
  if (format === 'confluence') {
    return { state: 'ready', kind: 'confluence', url: body.url, linkText: 'Open in Confluence', pageVersion: body.pageVersion ?? null, warnings }
  }
  const fileName = (typeof body.filename === 'string' && body.filename !== '' ? body.filename : null) ??
    fileNameOf(body.url) ?? `export.${format}`
  return {
    state: 'ready',
    kind: 'file',
    url: body.url,
    fileName,
    linkText: `Download ${fileName}`,
    expiry: typeof body.expiresAt === 'number' ? formatExpiry(body.expiresAt, now) : null,
    warnings
  }
}

interface Version { version: string, tag?: string, name?: string | null, message?: string | null, created_at?: number, archived?: boolean }

export function versionLabel (v: Version, locale?: string): string {
  const parts = [`v${v.version}`]
  const words = (v.name ?? '') !== '' ? v.name as string : (v.message ?? '')
  if (words !== '') parts.push(words.length > 48 ? `${words.slice(0, 47)}…` : words)
  if (typeof v.created_at === 'number') {
    parts.push(new Intl.DateTimeFormat(locale, { dateStyle: 'medium' }).format(new Date(v.created_at)))
  }
  return parts.join(' — ')
}

// ---------------------------------------------------------------- the panel

const MAX_RESULTS = 5

export function mount (body: HTMLElement, ctx: PanelContext): () => void {
  const cleanups: Array<() => void> = []
  let disposed = false
  const base = `/api/prds/${encodeURIComponent(ctx.prdId)}`

  // ---- the form
  const radios = FORMATS.map((f, i) => {
    const input = h('input', { type: 'radio', name: 'export-format', id: `export-format-${f.id}`, value: f.id, checked: i === 0, 'aria-describedby': `export-format-${f.id}-hint` })
    return h('div', { class: 'export-format' }, input,
      h('label', { for: `export-format-${f.id}` }, f.label),
      h('span', { class: 'export-format-hint', id: `export-format-${f.id}-hint` }, f.hint))
  })
  const versionSelect = h('select', { id: 'export-version' }, h('option', { value: '' }, 'Now (the current text)'))
  const versionStatus = h('p', { class: 'hint export-version-status' })
  const submit = h('button', { type: 'submit', class: 'button primary' }, 'Export')
  const live = h('p', { class: 'export-live', role: 'status', 'aria-live': 'polite' })
  const results = h('ul', { class: 'export-results', 'aria-label': 'Exports' })
  const form = h('form', { class: 'export-form', 'aria-label': 'Export this PRD' },
    h('fieldset', { class: 'export-formats' }, h('legend', {}, 'Format'), ...radios),
    h('div', { class: 'field' }, h('label', { for: 'export-version' }, 'Version to export'), versionSelect, versionStatus),
    submit)
  body.append(form, live, results)

  // ---- versions (refreshed when one is created)
  const loadVersions = (): void => {
    request<{ items: Version[] }>('GET', `${base}/versions`).then(answer => {
      if (disposed) return
      const chosen = versionSelect.value
      versionSelect.replaceChildren(h('option', { value: '' }, 'Now (the current text)'),
        ...answer.items.filter(v => v.archived !== true).map(v => h('option', { value: v.version }, versionLabel(v))))
      versionSelect.value = [...versionSelect.options].some(o => o.value === chosen) ? chosen : ''
      versionStatus.textContent = ''
    }, error => {
      if (!disposed) versionStatus.textContent = `The versions could not be listed (${messageOf(error)}); "Now" still works.`
    })
  }
  loadVersions()

  // ---- following exports: the provider's notices first, polling as a fallback
  interface Tracked { item: HTMLElement, format: ExportFormat, timer: ReturnType<typeof setTimeout> | null, attempt: number, settled: boolean }
  const tracked = new Map<string, Tracked>()
  const early = new Map<string, ExportNotice>() // a notice that arrived before the POST answered

  cleanups.push(ctx.provider.on('notice', (frame: { type?: string, exportId?: string }) => {
    if (frame.type === 'version-created') loadVersions()
    if ((frame.type !== 'export.ready' && frame.type !== 'export.failed') || typeof frame.exportId !== 'string') return
    const notice = frame as ExportNotice
    const job = tracked.get(notice.exportId)
    if (job === undefined) {
      early.set(notice.exportId, notice)
      return
    }
    void settleFromNotice(notice.exportId, job, notice)
  }))

  async function settleFromNotice (exportId: string, job: Tracked, notice: ExportNotice): Promise<void> {
    if (job.settled) return
    if (job.timer !== null) clearTimeout(job.timer)
    job.timer = null
    // The notice has the link; GET adds the warnings (and the Confluence page's version).
    try {
      const full = await request<ExportBody>('GET', `/api/exports/${encodeURIComponent(exportId)}`)
      if (full.status === 'done' || full.status === 'failed') return settle(job, full)
    } catch { /* the notice is enough */ }
    settle(job, { exportId, status: notice.type === 'export.ready' ? 'done' : 'failed', format: notice.format ?? job.format,
      url: notice.url ?? undefined, expiresAt: notice.expiresAt ?? undefined, error: notice.error, warnings: [] })
  }

  function poll (exportId: string, job: Tracked): void {
    job.timer = setTimeout(() => {
      job.timer = null
      request<ExportBody>('GET', `/api/exports/${encodeURIComponent(exportId)}`).then(now => {
        if (disposed || job.settled) return
        if (now.status === 'done' || now.status === 'failed') return settle(job, now)
        showRunning(job, now)
        poll(exportId, job)
      }, error => {
        if (disposed || job.settled) return
        if (error instanceof ApiError && error.status !== 429 && error.status < 500) {
          return settle(job, { exportId, status: 'failed', error: { code: error.code, message: error.message } })
        }
        poll(exportId, job) // a hiccup: keep trying, less often
      })
    }, backoffDelay(job.attempt++, 1_500, 10_000))
  }

  function showRunning (job: Tracked, now: Partial<ExportBody>): void {
    const view = resultView({ ...now, format: job.format })
    if (view.state === 'running') job.item.querySelector('.export-result-state')!.textContent = view.text
  }

  function settle (job: Tracked, final: ExportBody): void {
    if (job.settled || disposed) return
    job.settled = true
    if (job.timer !== null) clearTimeout(job.timer)
    const view = resultView({ ...final, format: final.format ?? job.format })
    renderResult(job.item, view)
    const label = FORMAT_LABEL[job.format]
    live.textContent = view.state === 'ready'
      ? (view.kind === 'file' ? `${label} ready: ${view.fileName}.` : 'Published to Confluence.')
      : `${label} export: ${view.text}`
  }

  function renderResult (item: HTMLElement, view: ResultView): void {
    item.dataset.state = view.state
    const stateEl = item.querySelector('.export-result-state')!
    const extra = item.querySelector('.export-result-body')!
    extra.replaceChildren()
    if (view.state !== 'ready') {
      stateEl.textContent = view.state === 'running' ? view.text : ''
      if (view.state !== 'running') extra.append(h('p', { class: 'notice notice-error' }, view.text))
      return
    }
    if (view.kind === 'file') {
      stateEl.textContent = 'Ready'
      extra.append(h('a', { class: 'export-link', href: view.url, download: view.fileName, rel: 'noopener' }, view.linkText))
      if (view.expiry !== null) extra.append(h('p', { class: 'hint' }, view.expiry))
    } else {
      stateEl.textContent = 'Published'
      extra.append(h('a', { class: 'export-link', href: view.url, target: '_blank', rel: 'noopener noreferrer' }, view.linkText,
        h('span', { class: 'export-newtab' }, ' (opens in a new tab)')))
      if (view.pageVersion !== null) extra.append(h('p', { class: 'hint' }, `Page version ${view.pageVersion}.`))
    }
    if (view.warnings.length > 0) {
      extra.append(h('p', { class: 'export-warnings-title' }, view.warnings.length === 1 ? 'Warning:' : 'Warnings:'),
        h('ul', { class: 'export-warnings' }, ...view.warnings.map(w => h('li', {}, w))))
    }
  }

  let asking = false // one POST at a time (the button stays enabled so that it keeps the keyboard focus)
  form.addEventListener('submit', event => {
    event.preventDefault()
    if (asking) return
    const format = (form.querySelector<HTMLInputElement>('input[name="export-format"]:checked')?.value ?? 'pdf') as ExportFormat
    const version = versionSelect.value
    const label = FORMAT_LABEL[format]
    const item = h('li', { class: 'export-result', 'data-format': format, 'data-state': 'running' },
      h('p', { class: 'export-result-head' },
        h('strong', {}, label), ` · ${version === '' ? 'now' : `v${version}`} · `,
        h('span', { class: 'export-result-state' }, 'Asking…')),
      h('div', { class: 'export-result-body' }))
    results.prepend(item)
    while (results.children.length > MAX_RESULTS) results.lastElementChild?.remove()
    asking = true
    submit.setAttribute('aria-disabled', 'true')
    live.textContent = `Exporting to ${label}…`
    request<{ exportId: string, status: ExportBody['status'] }>('POST', `${base}/exports`, { format, ...(version !== '' ? { version } : {}) })
      .then(started => {
        if (disposed) return
        item.dataset.exportId = started.exportId
        const job: Tracked = { item, format, timer: null, attempt: 0, settled: false }
        tracked.set(started.exportId, job)
        showRunning(job, started)
        const notice = early.get(started.exportId)
        early.delete(started.exportId)
        if (notice !== undefined) void settleFromNotice(started.exportId, job, notice)
        else poll(started.exportId, job)
      }, error => {
        if (disposed) return
        const text = error instanceof ApiError ? exportErrorText(error.code, error.message) : messageOf(error)
        renderResult(item, { state: 'failed', text })
        live.textContent = `${label} export: ${text}`
      })
      .finally(() => { asking = false; submit.removeAttribute('aria-disabled') })
  })

  return () => {
    disposed = true
    for (const job of tracked.values()) if (job.timer !== null) clearTimeout(job.timer)
    cleanups.forEach(fn => fn())
  }
}
