// Import a document as a new PRD, from the PRD list (docs/import-export.md): a file picker button and
// drag-and-drop onto the list page, an optional name for the PRD, "Draft missing sections with AI".
// Files up to 4 MiB go to POST /api/imports (multipart); larger ones (up to 20 MiB) straight to S3
// with the presigned POST form of POST /api/imports/uploads, then .../complete. Both uploads use
// XMLHttpRequest for its upload progress. The list screen has no WebSocket: the import is followed
// by polling GET /api/imports/{id} with backoff until it is done or failed, then the fidelity and
// missing-section report is shown with a link to the new PRD.
//
// A lazily loaded chunk: screens/list.ts renders the controls and the drop zone (and loads
// import.css with the first screen) and imports this module when a file is picked or dragged over
// the page, so the list itself loads nothing more. The pure parts (checkFile, pollDelay, reportView,
// importErrorText) are exported for the unit tests.
import { ApiError, freshToken, refresh, request, retryAfterMs } from '../api'
import { h, messageOf, notice } from '../dom'

export const DIRECT_MAX_BYTES = 4 * 1024 * 1024 // IMPORT_MAX_BYTES: one multipart request through the API
export const UPLOAD_MAX_BYTES = 20 * 1024 * 1024 // IMPORT_UPLOAD_MAX_BYTES: straight to S3

type Kind = 'docx' | 'pdf' | 'markdown' | 'html'
/** The extensions the server takes (prdtool.imports.sniff.EXTENSIONS). */
const EXTENSIONS: Record<string, Kind> = {
  '.docx': 'docx', '.docm': 'docx', '.pdf': 'pdf',
  '.md': 'markdown', '.markdown': 'markdown', '.txt': 'markdown',
  '.html': 'html', '.htm': 'html', '.xhtml': 'html'
}
export const ACCEPT = Object.keys(EXTENSIONS).join(',')
const KIND_TEXT: Record<string, string> = { docx: 'Word document', pdf: 'PDF', markdown: 'Markdown file', html: 'HTML page' }

/** The standard sections' titles (prdtool.ai.sections, template "standard"). */
export const SECTION_TITLES: Record<string, string> = {
  overview: 'Overview',
  problem: 'Problem',
  users: 'Target users',
  goals: 'Goals',
  'non-goals': 'Non-goals',
  'user-stories': 'User stories',
  requirements: 'Requirements',
  'success-metrics': 'Success metrics',
  risks: 'Risks and mitigations',
  timeline: 'Timeline',
  'open-questions': 'Open questions'
}

const DROPPED_LABELS: Record<string, string> = {
  image: 'Images',
  style: 'Styles',
  embedded: 'Embedded objects',
  macro: 'Macros',
  link: 'Unsafe links',
  unsupported: 'Unsupported content'
}

// ---------------------------------------------------------------- pure parts

export function formatBytes (bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`
  const mb = bytes / (1024 * 1024)
  return `${mb < 10 ? mb.toFixed(1).replace(/\.0$/, '') : Math.round(mb)} MB`
}

export function extensionOf (name: string): string {
  const dot = name.lastIndexOf('.')
  return dot <= 0 ? '' : name.slice(dot).toLowerCase()
}

export type FileCheck =
  | { ok: true, kind: Kind, route: 'direct' | 'upload' }
  | { ok: false, reason: 'type' | 'empty' | 'size', message: string }

/** Whether a file may be imported, before anything is sent (the server checks again, by content). */
export function checkFile (file: { name: string, size: number }): FileCheck {
  const kind = EXTENSIONS[extensionOf(file.name)]
  if (kind === undefined) {
    return { ok: false, reason: 'type', message: `${file.name} cannot be imported: choose a Word (.docx), PDF (.pdf), Markdown (.md) or HTML (.html) file.` }
  }
  if (file.size === 0) return { ok: false, reason: 'empty', message: `${file.name} is empty: there is nothing to import.` }
  if (file.size > UPLOAD_MAX_BYTES) {
    return { ok: false, reason: 'size', message: `${file.name} is ${formatBytes(file.size)}: imports take files of at most ${formatBytes(UPLOAD_MAX_BYTES)}.` }
  }
  if (file.size > DIRECT_MAX_BYTES && (kind === 'markdown' || kind === 'html')) {
    return { ok: false, reason: 'size', message: `${file.name} is ${formatBytes(file.size)}: Markdown and HTML files may be at most ${formatBytes(DIRECT_MAX_BYTES)} (only Word and PDF files may be larger).` }
  }
  return { ok: true, kind, route: file.size <= DIRECT_MAX_BYTES ? 'direct' : 'upload' }
}

/** How long to wait before the `attempt`-th poll (0-based): 0.5 s growing ×1.6 up to 5 s. */
export function pollDelay (attempt: number, baseMs = 500, maxMs = 5_000): number {
  return Math.round(Math.min(maxMs, baseMs * 1.6 ** Math.max(0, attempt)))
}

/** Words for a refused or failed import: what happened, then the server's own explanation. */
const ERROR_LEAD: Record<string, string> = {
  unsupported_media_type: 'This kind of file cannot be imported.',
  import_type_mismatch: 'The file\'s name does not match what it contains.',
  file_too_large: 'The file is too large.',
  import_too_large: 'The document is too large to import.',
  http_413: 'The file is too large.',
  import_encrypted: 'The document is protected by a password: remove the password, save it and import it again.',
  import_no_text: 'There is no text to import: a scanned PDF holds only pictures of its pages. Export it with its text (OCR) and try again.',
  import_damaged: 'The file is damaged or incomplete and cannot be read.',
  import_suspicious: 'The file was refused because it looks unsafe to open (for example a compressed file far larger than it seems).',
  import_too_deep: 'The document is nested too deeply to import.',
  import_empty: 'The file is empty.',
  empty_file: 'The file is empty.',
  upload_missing: 'The upload did not reach the document store.',
  upload_refused: 'The document store refused the upload.',
  unavailable: 'The service is busy or unavailable.',
  internal_error: 'Something went wrong on our side.'
}

const sentence = (text: string): string => {
  const t = text.trim()
  if (t === '') return t
  // "the PDF is…" → "The PDF is…", but a file name stays as it is ("fake.docx is…")
  const capital = /^[a-z]+(?=[\s,:;]|$)/.test(t) ? t[0].toUpperCase() + t.slice(1) : t
  return /[.!?]$/.test(capital) ? capital : `${capital}.`
}

export function importErrorText (code: string | undefined, message: string | undefined): string {
  const lead = code !== undefined ? ERROR_LEAD[code] : undefined
  const detail = message !== undefined && message.trim() !== '' ? sentence(message) : ''
  if (lead === undefined) return detail !== '' ? detail : 'The import failed.'
  return detail !== '' && detail.toLowerCase() !== lead.toLowerCase() ? `${lead} ${detail}` : lead
}

export interface ImportReport {
  sections?: Array<{ heading: string, level?: number, key: string | null, confidence: number, words?: number }>
  missing?: Array<{ key: string, title?: string, state?: string, words?: number, min_words?: number }>
  dropped?: Array<{ kind: string, detail: string, count: number }>
  title?: string | null
  intro?: { words?: number, role?: string }
  warnings?: string[]
}

export interface ImportStatus {
  importId: string
  status: 'uploading' | 'queued' | 'running' | 'done' | 'failed'
  filename?: string
  detected?: string | null
  prdId?: string
  report?: ImportReport
  aiJobId?: string
  aiNote?: string
  /** The server's word on the AI draft (absent from older servers: then it is inferred). */
  aiDraft?: 'pending' | 'started' | 'skipped' | 'off'
  error?: { code?: string, message?: string }
}

export interface ReportView {
  title: string | null
  sections: Array<{ heading: string, section: string | null, confidence: number, confidenceText: string, level: 'high' | 'medium' | 'low' | 'none' }>
  mapped: number
  missing: Array<{ title: string, thin: boolean }>
  dropped: Array<{ kind: string, label: string, count: number, details: string[] }>
  warnings: string[]
  intro: string | null
  ai: { started: boolean, pending?: boolean, text: string } | null
}

export function confidenceText (confidence: number): { text: string, level: ReportView['sections'][number]['level'] } {
  if (confidence >= 1) return { text: 'Exact', level: 'high' }
  if (confidence >= 0.9) return { text: 'Synonym', level: 'high' }
  if (confidence >= 0.6) return { text: 'Likely', level: 'medium' }
  if (confidence > 0) return { text: 'Unsure', level: 'low' }
  return { text: 'Not mapped', level: 'none' }
}

const listText = (items: string[]): string =>
  items.length <= 2 ? items.join(' and ') : `${items.slice(0, -1).join(', ')}, and ${items[items.length - 1]}`

/** Whether the import is done but the AI draft it asked for is not recorded yet: the worker starts
 * the AI job after marking the import done, so `aiJobId` (or `aiNote`, why there is none) comes a
 * moment later. */
export function awaitingAi (result: Pick<ImportStatus, 'report' | 'aiJobId' | 'aiNote' | 'aiDraft'>, draftMissing: boolean): boolean {
  if (result.aiDraft !== undefined) return result.aiDraft === 'pending'
  return draftMissing && (result.report?.missing?.length ?? 0) > 0 &&
    (result.aiJobId ?? '') === '' && (result.aiNote ?? '') === ''
}

export const AI_PENDING_TEXT = 'Asking the AI to draft the missing sections…'
export const AI_LATE_TEXT = 'The AI draft of the missing sections has not started yet: if it does, its suggestions will wait for review in the PRD\'s AI panel.'

/** The import's result as the report screen shows it (`aiPending`: see awaitingAi). */
export function reportView (result: Pick<ImportStatus, 'report' | 'aiJobId' | 'aiNote'>, aiPending = false): ReportView {
  const report = result.report ?? {}
  const sections = (report.sections ?? []).map(s => {
    const { text, level } = confidenceText(s.confidence)
    const section = s.key !== null && s.confidence > 0 ? (SECTION_TITLES[s.key] ?? s.key) : null
    return { heading: s.heading, section, confidence: s.confidence, confidenceText: `${text} (${Math.round(s.confidence * 100)}%)`, level }
  })
  const missing = (report.missing ?? []).map(m => ({ title: m.title ?? SECTION_TITLES[m.key] ?? m.key, thin: m.state === 'thin' }))
  const dropped: ReportView['dropped'] = []
  for (const item of report.dropped ?? []) {
    if (!(item.count > 0)) continue
    let group = dropped.find(d => d.kind === item.kind)
    if (group === undefined) {
      const label = DROPPED_LABELS[item.kind] ?? sentence(item.kind.replace(/[-_]/g, ' ')).replace(/\.$/, '')
      dropped.push(group = { kind: item.kind, label, count: 0, details: [] })
    }
    group.count += item.count
    if (!group.details.includes(item.detail)) group.details.push(item.detail)
  }
  let ai: ReportView['ai'] = null
  if (result.aiJobId !== undefined && result.aiJobId !== '') {
    const names = missing.map(m => m.title)
    ai = {
      started: true,
      text: `The AI is drafting ${names.length > 0 ? `the missing sections (${listText(names)})` : 'the missing sections'}: ` +
        'its suggestions wait for review in the PRD\'s AI panel, and nothing is added until someone accepts them.'
    }
  } else if (result.aiNote !== undefined && result.aiNote !== '') {
    ai = { started: false, text: `No AI draft: ${result.aiNote.replace(/\.$/, '')}.` }
  } else if (aiPending) {
    ai = { started: false, pending: true, text: AI_PENDING_TEXT }
  }
  const intro = report.intro?.role === 'overview' && (report.intro.words ?? 0) > 0
    ? 'The text before the first heading counts as the Overview.'
    : null
  return {
    title: report.title ?? null,
    sections,
    mapped: sections.filter(s => s.section !== null && s.confidence >= 0.6).length,
    missing,
    dropped,
    warnings: report.warnings ?? [],
    intro,
    ai
  }
}

export const STATUS_TEXT: Record<ImportStatus['status'], string> = {
  uploading: 'Uploading',
  queued: 'Waiting to be converted',
  running: 'Converting the document',
  done: 'Imported',
  failed: 'Not imported'
}

// ---------------------------------------------------------------- uploads (XMLHttpRequest, for progress)

interface Sent { status: number, text: string, retryAfter: string | null }

function xhrPost (url: string, body: FormData, { token, onProgress, signal }: {
  token?: string
  onProgress?: (loaded: number, total: number) => void
  signal: AbortSignal
}): Promise<Sent> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest()
    xhr.open('POST', url)
    if (token !== undefined) xhr.setRequestHeader('authorization', `Bearer ${token}`)
    if (onProgress !== undefined) {
      xhr.upload.addEventListener('progress', event => { if (event.lengthComputable) onProgress(event.loaded, event.total) })
    }
    const abort = (): void => xhr.abort()
    signal.addEventListener('abort', abort, { once: true })
    xhr.addEventListener('load', () => {
      signal.removeEventListener('abort', abort)
      resolve({ status: xhr.status, text: xhr.responseText, retryAfter: xhr.getResponseHeader('retry-after') })
    })
    xhr.addEventListener('error', () => { signal.removeEventListener('abort', abort); reject(new TypeError('network error')) })
    xhr.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')))
    xhr.send(body)
  })
}

function apiErrorOf (sent: Sent): ApiError {
  let code = `http_${sent.status}`
  let message = `The server answered ${sent.status}.`
  try {
    const body = JSON.parse(sent.text) as { error?: { code?: string, message?: string }, message?: string }
    if (body.error?.code !== undefined) code = body.error.code
    if (body.error?.message !== undefined) message = body.error.message
    else if (typeof body.message === 'string') message = body.message // API Gateway's own answers
  } catch { /* not JSON */ }
  return new ApiError(sent.status, code, message)
}

/** A multipart POST to our API with the session's token: a 401 refreshes once, a 429 waits its Retry-After. */
async function postForm<T> (path: string, form: () => FormData, onProgress: (loaded: number, total: number) => void, signal: AbortSignal): Promise<T> {
  let refreshed = false
  for (let waited = 0; ; waited++) {
    const sent = await xhrPost(path, form(), { token: await freshToken(), onProgress, signal })
    if (sent.status === 401 && !refreshed) {
      refreshed = true
      await refresh()
      continue
    }
    if (sent.status === 429 && waited < 3) {
      await sleep(retryAfterMs(sent.retryAfter), signal)
      continue
    }
    if (sent.status < 200 || sent.status >= 300) throw apiErrorOf(sent)
    return JSON.parse(sent.text) as T
  }
}

/** S3's XML error (<Error><Code/><Message/></Error>) in words. */
function s3ErrorOf (sent: Sent): ApiError {
  const pick = (tag: string): string | undefined => new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(sent.text)?.[1]
  const code = pick('Code') ?? `http_${sent.status}`
  const message = pick('Message') ?? `the document store answered ${sent.status}`
  if (code === 'EntityTooLarge' || code === 'EntityTooSmall') {
    return new ApiError(sent.status, 'file_too_large', `the document store refused the file's size (${message})`)
  }
  if (code === 'AccessDenied' && /expired/i.test(message)) {
    return new ApiError(sent.status, 'upload_refused', 'the upload form expired before the file was sent: import it again')
  }
  return new ApiError(sent.status, 'upload_refused', message)
}

async function sleep (ms: number, signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    if (signal.aborted) return reject(new DOMException('aborted', 'AbortError'))
    const timer = setTimeout(() => { signal.removeEventListener('abort', stop); resolve() }, ms)
    const stop = (): void => { clearTimeout(timer); reject(new DOMException('aborted', 'AbortError')) }
    signal.addEventListener('abort', stop, { once: true })
  })
}

const isAbort = (error: unknown): boolean => error instanceof DOMException && error.name === 'AbortError'

// ---------------------------------------------------------------- the screen

/** What the list screen (screens/list.ts, which owns the controls and the drop zone) gives the importer. */
export interface ImportUi {
  /** Where progress and the report appear (above the list). */
  output: HTMLElement
  /** Short messages next to the controls ("an import is already running"). */
  status: HTMLElement
  /** The "Import a document" button: marked aria-disabled while an import runs, focused after Dismiss. */
  button: HTMLElement
  /** A PRD was made (the list refreshes). */
  onImported?: (prdId: string) => void
}

export interface ImportOptions { name: string, draftMissing: boolean }

export interface Importer {
  /** Checks the file, uploads it, follows the conversion and shows the report (one import at a time). */
  start: (file: File, options: ImportOptions) => void
  readonly running: boolean
  /** Stops following (an upload in flight is aborted). */
  dispose: () => void
}

const POLL_GIVE_UP_MS = 10 * 60_000

export function createImporter (ui: ImportUi): Importer {
  const controller = new AbortController()
  const { signal } = controller
  let running = false
  let jobCount = 0
  const host = { output: ui.output }
  const formStatus = ui.status
  const pick = ui.button

  // ---- one import at a time, shown above the list
  function start (file: File, { name, draftMissing }: ImportOptions): void {
    formStatus.replaceChildren()
    if (running) {
      formStatus.append(notice('An import is already running: wait until it is finished.'))
      return
    }
    const check = checkFile(file)
    if (!check.ok) {
      showRefused(file.name, check.message)
      return
    }
    running = true // the button stays enabled (disabling it would drop the keyboard focus): it says so instead
    pick.setAttribute('aria-disabled', 'true')
    void run(file, check.route, name.trim(), draftMissing).finally(() => {
      running = false
      pick.removeAttribute('aria-disabled')
      formStatus.replaceChildren()
    })
  }

  function jobCard (titleText: string): { card: HTMLElement, heading: HTMLElement, body: HTMLElement } {
    const id = `import-job-${++jobCount}`
    const heading = h('h2', { id, tabindex: '-1' }, titleText)
    const body = h('div', { class: 'import-job-body' })
    const card = h('section', { class: 'card import-job', 'aria-labelledby': id }, heading, body)
    host.output.replaceChildren(card)
    return { card, heading, body }
  }

  function showRefused (filename: string, text: string): void {
    const { card, body } = jobCard(`${filename} was not imported`)
    card.dataset.state = 'failed'
    body.append(notice(text), dismiss())
  }

  function dismiss (): HTMLElement {
    return h('button', { type: 'button', class: 'link-button', onclick: () => { host.output.replaceChildren(); pick.focus() } }, 'Dismiss')
  }

  async function run (file: File, route: 'direct' | 'upload', name: string, draftMissing: boolean): Promise<void> {
    const { card, heading, body } = jobCard(`Importing ${file.name}`)
    card.dataset.state = 'uploading'
    const steps = (['Upload', 'Convert', 'Report'] as const).map(text => h('li', {}, text))
    const live = h('p', { class: 'import-live', role: 'status', 'aria-live': 'polite' })
    const progress = h('progress', { max: 100, value: 0, class: 'import-progress', 'aria-label': `Upload of ${file.name}` })
    const detail = h('p', { class: 'hint import-detail' })
    body.append(h('ol', { class: 'import-steps', 'aria-label': 'Import steps' }, ...steps), live, progress, detail)
    const step = (index: number): void => steps.forEach((li, i) => {
      li.dataset.state = i < index ? 'done' : i === index ? 'current' : 'todo'
      if (i === index) li.setAttribute('aria-current', 'step')
      else li.removeAttribute('aria-current')
    })
    let lastPercent = -1
    const onProgress = (loaded: number, total: number): void => {
      const percent = total > 0 ? Math.floor(loaded / total * 100) : 0
      progress.value = percent
      if (percent !== lastPercent && (percent === 100 || percent - lastPercent >= 10 || lastPercent < 0)) {
        live.textContent = `Uploading ${file.name}: ${percent}%`
        lastPercent = percent
      }
      detail.textContent = `${formatBytes(loaded)} of ${formatBytes(total)}`
    }
    const state = (status: ImportStatus['status']): void => {
      card.dataset.state = status
      if (status === 'queued' || status === 'running') {
        step(1)
        progress.removeAttribute('value') // indeterminate while converting
        progress.setAttribute('aria-label', `Conversion of ${file.name}`)
        live.textContent = `${STATUS_TEXT[status]}…`
        detail.textContent = status === 'queued' ? 'The upload is complete; the document waits for a converter.' : 'Reading the document and matching its headings to the standard sections.'
      }
    }
    step(0)
    live.textContent = `Uploading ${file.name}…`
    detail.textContent = formatBytes(file.size)

    let importId: string
    try {
      if (route === 'direct') {
        const started = await postForm<ImportStatus>('/api/imports', () => {
          const form = new FormData()
          form.append('file', file, file.name)
          if (name !== '') form.append('title', name)
          form.append('draftMissing', draftMissing ? 'true' : 'false')
          return form
        }, onProgress, signal)
        importId = started.importId
        state(started.status === 'running' ? 'running' : 'queued')
      } else {
        const created = await request<{ importId: string, upload: { url: string, fields: Record<string, string>, fileField?: string } }>(
          'POST', '/api/imports/uploads', { filename: file.name, size: file.size, ...(name !== '' ? { title: name } : {}), draftMissing })
        importId = created.importId
        const form = new FormData()
        for (const [key, value] of Object.entries(created.upload.fields)) form.append(key, value)
        form.append(created.upload.fileField ?? 'file', file, file.name) // the file last: S3 ignores fields after it
        let sent: Sent
        try {
          sent = await xhrPost(created.upload.url, form, { onProgress, signal })
        } catch (error) {
          if (error instanceof TypeError) {
            throw new ApiError(0, 'upload_refused', 'the upload could not reach the document store (the network, or this site\'s security settings, stopped it)')
          }
          throw error
        }
        if (sent.status < 200 || sent.status >= 300) throw s3ErrorOf(sent)
        onProgress(file.size, file.size)
        const completed = await request<ImportStatus>('POST', `/api/imports/${encodeURIComponent(importId)}/complete`)
        state(completed.status === 'running' ? 'running' : 'queued')
      }
    } catch (error) {
      if (isAbort(error)) return
      fail(error instanceof ApiError ? importErrorText(error.code, error.message) : messageOf(error))
      return
    }

    // ---- follow it (no WebSocket on this screen): poll with backoff until done or failed
    const startedAt = Date.now()
    let result: ImportStatus | null = null
    for (let attempt = 0; result === null; attempt++) {
      try {
        await sleep(pollDelay(attempt), signal)
        const now = await request<ImportStatus>('GET', `/api/imports/${encodeURIComponent(importId)}`)
        if (now.status === 'done' || now.status === 'failed') result = now
        else state(now.status)
      } catch (error) {
        if (isAbort(error)) return
        if (error instanceof ApiError && error.status !== 429 && error.status < 500) {
          fail(importErrorText(error.code, error.message))
          return
        }
        // a network hiccup or a busy server: keep polling (the backoff grows)
      }
      if (result === null && Date.now() - startedAt > POLL_GIVE_UP_MS) {
        live.textContent = 'The conversion is taking unusually long.'
        const again = h('button', { type: 'button', class: 'button' }, 'Check again')
        detail.replaceChildren('It continues on the server; ', again)
        await new Promise<void>(resolve => {
          again.addEventListener('click', () => resolve(), { once: true })
          signal.addEventListener('abort', () => resolve(), { once: true })
        })
        detail.replaceChildren()
        if (signal.aborted) return
      }
    }
    if (signal.aborted) return
    if (result.status === 'failed') {
      fail(importErrorText(result.error?.code, result.error?.message))
      return
    }
    step(3)
    card.dataset.state = 'done'
    heading.textContent = `Imported ${file.name}`
    const view = reportView(result, awaitingAi(result, draftMissing))
    let prdTitle: string | null = name !== '' ? name : view.title
    live.textContent = `Imported: ${view.mapped} of ${view.sections.length} headings matched standard sections, ${view.missing.length} missing.`
    progress.remove()
    detail.remove()
    const open = result.prdId !== undefined
      ? h('a', { class: 'button primary import-open', href: `/prds/${encodeURIComponent(result.prdId)}` }, 'Open the new PRD')
      : null
    const titleLine = h('p', { class: 'import-summary' })
    const setTitle = (): void => {
      titleLine.replaceChildren(
        prdTitle !== null ? h('strong', {}, prdTitle) : 'The new PRD',
        ` was made from ${file.name}${result?.detected != null ? ` (${KIND_TEXT[result.detected] ?? result.detected})` : ''}.`)
    }
    setTitle()
    const report = renderReport(view)
    body.append(titleLine, open ?? '', report, dismiss())
    if (result.prdId !== undefined) {
      ui.onImported?.(result.prdId)
      if (name === '') {
        request<{ title?: string }>('GET', `/api/prds/${encodeURIComponent(result.prdId)}`)
          .then(prd => { if (typeof prd.title === 'string' && prd.title !== '') { prdTitle = prd.title; setTitle() } }, () => {})
      }
    }
    // the AI job is recorded a moment after "done": follow it a little longer (the list is usable meanwhile)
    if (view.ai?.pending === true) void followAi(report)

    async function followAi (report: HTMLElement): Promise<void> { // not awaited: another import may start meanwhile
      let ai: ReportView['ai'] = null
      for (let attempt = 0; ai === null && attempt < 10; attempt++) {
        try {
          await sleep(pollDelay(attempt), signal)
          const later = await request<ImportStatus>('GET', `/api/imports/${encodeURIComponent(importId)}`)
          if (!awaitingAi(later, draftMissing)) ai = reportView(later).ai
        } catch (error) {
          if (isAbort(error)) return
        }
      }
      const final = ai ?? { started: false, text: AI_LATE_TEXT }
      const paragraph = report.querySelector<HTMLElement>('.import-ai')
      if (paragraph !== null) { // updated in place: its live region announces the change
        paragraph.classList.toggle('import-ai-started', final.started)
        paragraph.removeAttribute('aria-busy')
        paragraph.textContent = final.text
      }
    }

    function fail (text: string): void {
      card.dataset.state = 'failed'
      steps.forEach(li => { if (li.dataset.state === 'current') li.dataset.state = 'failed' })
      heading.textContent = `${file.name} was not imported`
      progress.remove()
      live.textContent = ''
      detail.replaceChildren()
      body.append(h('div', { role: 'alert', class: 'notice notice-error import-error' }, text), dismiss())
    }
  }

  return {
    start,
    get running () { return running },
    dispose: () => controller.abort()
  }
}

function aiParagraph (ai: NonNullable<ReportView['ai']>): HTMLElement {
  return h('p', { class: `import-ai${ai.started ? ' import-ai-started' : ''}`, 'aria-live': 'polite', 'aria-busy': ai.pending === true ? 'true' : null }, ai.text)
}

function renderReport (view: ReportView): HTMLElement {
  const report = h('div', { class: 'import-report' })

  // mapped sections
  report.append(h('h3', {}, 'Sections found'))
  if (view.sections.length === 0) {
    report.append(h('p', {}, 'The document has no headings below its title: all its text is in the new PRD, under no section.'))
  } else {
    report.append(h('table', { class: 'import-sections' },
      h('caption', {}, `${view.mapped} of ${view.sections.length} headings match a standard section`),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, 'Heading in the document'),
        h('th', { scope: 'col' }, 'Standard section'),
        h('th', { scope: 'col' }, 'Confidence'))),
      h('tbody', {}, ...view.sections.map(s => h('tr', {},
        h('td', {}, s.heading),
        h('td', {}, s.section ?? h('span', { class: 'hint' }, 'kept as it is')),
        h('td', {}, h('span', { class: `import-conf import-conf-${s.level}` }, s.confidenceText)))))))
  }
  if (view.intro !== null) report.append(h('p', { class: 'hint' }, view.intro))

  // missing sections
  report.append(h('h3', {}, 'Missing sections'))
  if (view.missing.length === 0) {
    report.append(h('p', {}, 'Every standard section is there.'))
  } else {
    report.append(h('ul', { class: 'import-missing' }, ...view.missing.map(m =>
      h('li', {}, m.title, m.thin ? h('span', { class: 'hint' }, ' — too short') : ''))))
  }
  if (view.ai !== null) report.append(aiParagraph(view.ai))

  // what was not carried over
  report.append(h('h3', {}, 'Not carried over'))
  if (view.dropped.length === 0) {
    report.append(h('p', {}, 'Nothing: everything in the document was imported.'))
  } else {
    report.append(h('ul', { class: 'import-dropped' }, ...view.dropped.map(d => h('li', { 'data-kind': d.kind },
      h('strong', {}, d.label), ` (${d.count}): `,
      d.details.length === 1
        ? d.details[0]
        : h('details', {}, h('summary', {}, `which ones (${d.details.length})`), h('ul', {}, ...d.details.map(text => h('li', {}, text))))))))
  }
  if (view.warnings.length > 0) {
    report.append(h('h3', {}, 'Warnings'), h('ul', { class: 'import-warnings' }, ...view.warnings.map(w => h('li', {}, w))))
  }
  return report
}
