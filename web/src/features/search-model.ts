// Search-as-you-type's pure parts (unit-tested in node): when a query is sent, the request's
// parameters, reading the answer defensively (snippets stay plain text segments), the guard that
// drops stale answers, the active option's wrapping, and errors in words. The route is
// GET /api/search (shared/prdtool/search/model.py: SearchQuery, SearchHit.to_json).

/** Fewer characters than this (after trimming): no query, the plain list shows. */
export const MIN_QUERY_CHARS = 2
/** The server's MAX_QUERY_CHARS: a longer query is 413 query_too_long (checked here first). */
export const MAX_QUERY_CHARS = 500
export const DEBOUNCE_MS = 150
export const RESULT_LIMIT = 20

export const MODES = [
  { id: 'hybrid', label: 'Both' },
  { id: 'text', label: 'Words' },
  { id: 'semantic', label: 'Meaning' }
] as const
export type SearchMode = typeof MODES[number]['id']
export const isMode = (value: string): value is SearchMode => MODES.some(m => m.id === value)

export interface Segment { text: string, highlight: boolean }

export interface SearchResult {
  prdId: string
  title: string
  /** The section's heading ("" for the text before the first heading). */
  section: string
  sectionIndex: number
  /** "" = the current document, else a version such as "1.2.0". */
  version: string
  score: number
  /** epoch ms (0 when the server gave none) */
  updatedAt: number
  snippet: Segment[]
  /** Why it was found: its words, only its meaning (it shares no word with the query), or both. */
  match: Match
}

export type Match = 'words' | 'meaning' | 'both'
const MATCHES: readonly string[] = ['words', 'meaning', 'both']

export interface SearchAnswer { results: SearchResult[], mode: string, engine: string }

// ------------------------------------------------------------------------------ the query

/** Characters as people count them (code points, as the server's len() does). */
const charCount = (text: string): number => [...text].length

export type QueryState = 'short' | 'long' | 'ok'

/** Whether `text` is sent: too short (no query), too long (said at once, no request) or ok. */
export function queryState (text: string): QueryState {
  const n = charCount(text.trim())
  return n < MIN_QUERY_CHARS ? 'short' : n > MAX_QUERY_CHARS ? 'long' : 'ok'
}

export interface QueryOptions { mode: SearchMode, allVersions: boolean, limit?: number }

/** The request's path: /api/search?q=…&mode=…&limit=…[&version=*]. */
export function searchPath (text: string, options: QueryOptions): string {
  const params = new URLSearchParams({ q: text.trim(), mode: options.mode, limit: String(options.limit ?? RESULT_LIMIT) })
  if (options.allVersions) params.set('version', '*')
  return `/api/search?${params.toString()}`
}

// ------------------------------------------------------------------------------ the answer

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)
const str = (value: unknown): string => typeof value === 'string' ? value : ''
const num = (value: unknown): number => typeof value === 'number' && Number.isFinite(value) ? value : 0

/**
 * A snippet as plain text segments: empty ones dropped, neighbours of the same kind merged. Anything
 * that is not a list of {text, highlight} (a bare string included) is read as plain text, never HTML.
 */
export function snippetSegments (snippet: unknown): Segment[] {
  const raw: Segment[] = typeof snippet === 'string'
    ? [{ text: snippet, highlight: false }]
    : Array.isArray(snippet)
      ? snippet.map(part => typeof part === 'string'
        ? { text: part, highlight: false }
        : isRecord(part) ? { text: str(part.text), highlight: part.highlight === true } : { text: '', highlight: false })
      : []
  const out: Segment[] = []
  for (const part of raw) {
    if (part.text === '') continue
    const last = out.at(-1)
    if (last !== undefined && last.highlight === part.highlight) last.text += part.text
    else out.push({ ...part })
  }
  return out
}

/** One result, or null when it has no PRD to open. */
export function parseResult (item: unknown): SearchResult | null {
  if (!isRecord(item)) return null
  const prdId = str(item.prdId)
  if (!/^[A-Za-z0-9_-]{1,100}$/.test(prdId)) return null
  return {
    prdId,
    title: str(item.title).trim() || 'Untitled PRD',
    section: str(item.section).trim(),
    sectionIndex: Math.max(0, Math.trunc(num(item.sectionIndex))),
    version: str(item.version).trim(),
    score: num(item.score),
    updatedAt: num(item.updatedAt),
    snippet: snippetSegments(item.snippet),
    match: MATCHES.includes(str(item.match)) ? str(item.match) as Match : 'words'
  }
}

/** The answer of a 200, or null when the body is not a search answer at all. */
export function parseAnswer (body: unknown): SearchAnswer | null {
  if (!isRecord(body) || !Array.isArray(body.results)) return null
  const results = body.results.map(parseResult).filter((r): r is SearchResult => r !== null)
  return { results, mode: str(body.mode), engine: str(body.engine) }
}

/** "v1.2.0" for a version hit, null for the current document. */
export function versionLabel (version: string): string | null {
  const v = version.trim().replace(/^v/i, '')
  return v === '' ? null : `v${v}`
}

/**
 * Where a result opens: the PRD's editor, at the matched section when the hit is in the current
 * document (`?section=<heading>`: the editor moves its cursor there); a version's hit opens the PRD
 * (the client has no address for one version of a PRD).
 */
export function resultPath (result: Pick<SearchResult, 'prdId' | 'section' | 'version'>): string {
  const base = `/prds/${encodeURIComponent(result.prdId)}`
  return result.section !== '' && result.version === '' ? `${base}?${new URLSearchParams({ section: result.section }).toString()}` : base
}

/**
 * What the status line says after an answer. When every result was found by meaning only (a
 * semantic ranking always has a nearest PRD), it says that none holds the words.
 */
export function countText (n: number, query: string, meaningOnly = false): string {
  const q = query.trim()
  if (n === 0) return `No PRDs match “${q}”.`
  if (meaningOnly) return `No PRD contains “${q}”; ${n === 1 ? 'the closest by meaning' : `the ${n} closest by meaning`}`
  return n === 1 ? `1 result for “${q}”` : `${n} results for “${q}”`
}

// ------------------------------------------------------------------------------ staleness

/**
 * Numbers each request; only the answer to the latest one is shown. An answer that arrives after a
 * later request was started (out of order, or just slow) is dropped even if it was not aborted.
 */
export class LatestOnly {
  private last = 0

  /** A ticket for a new request: every earlier ticket is stale from now on. */
  next (): number { return ++this.last }

  /** Makes every ticket stale (the query was cleared). */
  cancel (): void { this.last++ }

  isCurrent (ticket: number): boolean { return ticket === this.last }
}

// ------------------------------------------------------------------------------ the keyboard

/**
 * The active option after ArrowDown (+1) or ArrowUp (-1), wrapping at both ends; -1 (none) when
 * there are no options. From none, down goes to the first and up to the last.
 */
export function moveActive (current: number, count: number, delta: 1 | -1): number {
  if (count <= 0) return -1
  if (current < 0 || current >= count) return delta > 0 ? 0 : count - 1
  return (current + delta + count) % count
}

// ------------------------------------------------------------------------------ errors

/** Seconds (at least 1) to wait from a Retry-After header: seconds or an HTTP date. */
export function retryAfterSeconds (header: string | null, now = Date.now()): number {
  if (header === null || header.trim() === '') return 1
  const seconds = Number(header)
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - now
  return Number.isFinite(ms) ? Math.max(1, Math.ceil(ms / 1000)) : 1
}

export interface SearchProblem {
  text: string
  /** After a 429: try the same query again after this many ms. */
  retryInMs?: number
  /** The query was empty to the server (nothing to say: the plain list shows). */
  quiet?: boolean
}

/** Words for a failed search, from its status, its JSON error's code and message, and Retry-After. */
export function problemOf (status: number, body: unknown, retryAfter: string | null = null, now = Date.now()): SearchProblem {
  const error = isRecord(body) && isRecord(body.error) ? body.error : {}
  const code = str(error.code)
  const message = str(error.message)
  if (status === 429) {
    const seconds = retryAfterSeconds(retryAfter, now)
    return { text: `Searching too fast — try again in ${seconds} s`, retryInMs: seconds * 1000 }
  }
  if (status === 413 || code === 'query_too_long') return { text: 'That search is too long' }
  if (status === 503 || code === 'search_unavailable') return { text: 'Search is unavailable right now' }
  if (code === 'empty_query') return { text: '', quiet: true }
  if (status === 401) return { text: 'Log in again to search.' }
  if (status === 422 || status === 400) return { text: `This search could not be run${message === '' ? '.' : `: ${message}`}` }
  return { text: `Search failed${message === '' ? ` (the server answered ${status})` : `: ${message}`}` }
}
