// The pure parts of the version history panel (no DOM): the API's shapes, paging, relative times,
// labels, and the diff model (parsing the backend's unified diffs into hunks, lines and change runs,
// pairing them side by side). Unit-tested in test/history.test.ts.

/** A version record as GET /api/prds/{id}/versions returns it (shared/prdtool/versions/records.py). */
export interface VersionRecord {
  version: string
  tag?: string
  /** major | minor | patch | initial (by-hand saves and restores are patches/minors/majors too) */
  kind: string
  summary: string
  details?: string[]
  authors: string[]
  /** epoch ms */
  created_at: number
  created_by?: string
  commit?: string | null
  name?: string | null
  message?: string | null
  restored_from?: string | null
  words_added?: number
  words_removed?: number
  state?: string
  archived?: boolean
}

export interface VersionPage { items: VersionRecord[], next: string | null }
export interface VersionWithText extends VersionRecord { markdown: string }

/** One section of GET /api/prds/{id}/diff (shared/prdtool/versions/api.py: diff). */
export interface SectionChangeJson {
  title: string
  old_title: string | null
  /** added | removed | renamed | moved | rewritten | edited | fixed */
  action: string
  summary: string
  words_added: number
  words_removed: number
  diff: string
}

export interface DiffJson {
  from: string
  to: string
  /** major | minor | patch | none */
  kind: string
  summary: string
  unified: string
  sections: SectionChangeJson[]
}

// ---- version numbers and paging ---------------------------------------------------------------

export const stripV = (version: string): string => version.replace(/^v/, '')
export const tagOf = (version: string): string => `v${stripV(version)}`

/** Numeric order of "1.10.0" vs "1.9.3" (negative when a is older). */
export function compareVersions (a: string, b: string): number {
  const pa = stripV(a).split('.').map(Number)
  const pb = stripV(b).split('.').map(Number)
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0)
    if (d !== 0) return d
  }
  return 0
}

export const PAGE_SIZE = 50

/** The list's query string: a page of `limit`, after the cursor `before` (a version number) if any. */
export function pageQuery (limit: number, before: string | null): string {
  const params = new URLSearchParams({ limit: String(limit) })
  if (before !== null) params.set('before', before)
  return `?${params.toString()}`
}

/** The versions loaded so far (newest first) and the cursor of the next (older) page. */
export interface ListState {
  items: VersionRecord[]
  /** The cursor for the next older page; null once the oldest version is loaded. */
  next: string | null
  /** Whether the first page has arrived. */
  loaded: boolean
}

export const emptyList = (): ListState => ({ items: [], next: null, loaded: false })

/** An older page appended (anything already known is skipped, so a page that overlaps after new
 *  versions arrived is harmless). */
export function appendPage (state: ListState, page: VersionPage): ListState {
  const known = new Set(state.items.map(v => v.version))
  const fresh = page.items.filter(v => !known.has(v.version))
  return { items: [...state.items, ...fresh].sort((a, b) => compareVersions(b.version, a.version)), next: page.next, loaded: true }
}

/**
 * The newest page (fetched again after a `version-created` notice, a save or a restore) merged on
 * top. `gap` is true when none of the page was known although we had versions: more versions
 * arrived than one page holds, so the caller should reload from the top.
 */
export function mergeNewest (state: ListState, page: VersionPage): { state: ListState, added: VersionRecord[], gap: boolean } {
  if (!state.loaded || state.items.length === 0) {
    return { state: { items: [...page.items], next: page.next, loaded: true }, added: [...page.items], gap: false }
  }
  const known = new Map(state.items.map(v => [v.version, v]))
  const added = page.items.filter(v => !known.has(v.version))
  const gap = added.length === page.items.length && page.next !== null
  if (gap) return { state, added: [], gap: true }
  // Records may change after the fact (pending → committed, archived): take the page's copy.
  const updated = state.items.map(v => page.items.find(p => p.version === v.version) ?? v)
  return { state: { ...state, items: [...added, ...updated].sort((a, b) => compareVersions(b.version, a.version)) }, added, gap: false }
}

/** The version before `version` in the list (older), if loaded. */
export function previousOf (items: VersionRecord[], version: string): VersionRecord | undefined {
  const at = items.findIndex(v => v.version === version)
  return at >= 0 ? items[at + 1] : undefined
}

// ---- words ------------------------------------------------------------------------------------

const UNITS: Array<[Intl.RelativeTimeFormatUnit, number]> = [
  ['second', 1000], ['minute', 60_000], ['hour', 3_600_000], ['day', 86_400_000],
  ['month', 30 * 86_400_000], ['year', 365 * 86_400_000]
]

/** "just now", "3 minutes ago", "yesterday", "2 months ago" (English, as the rest of the app). */
export function relativeTime (ms: number, now: number = Date.now()): string {
  const diff = ms - now // negative: in the past
  const abs = Math.abs(diff)
  if (abs < 45_000) return 'just now'
  const rtf = new Intl.RelativeTimeFormat('en', { numeric: 'auto' })
  const limits = [45 * 60_000, 22 * 3_600_000, 26 * 86_400_000, 320 * 86_400_000, Infinity]
  for (let i = 0; i < limits.length; i++) {
    if (abs < limits[i]) {
      const [unit, size] = UNITS[i + 1]
      const value = Math.round(diff / size)
      return rtf.format(value === 0 ? Math.sign(diff) || -1 : value, unit)
    }
  }
  return rtf.format(Math.round(diff / UNITS[5][1]), 'year')
}

/** The absolute time for a title attribute, e.g. "12 March 2026, 14:05:09 UTC" in the viewer's zone. */
export function absoluteTime (ms: number, timeZone?: string): string {
  return new Intl.DateTimeFormat('en-GB', { dateStyle: 'long', timeStyle: 'long', timeZone }).format(ms)
}

export const isoTime = (ms: number): string => new Date(ms).toISOString()

const KIND_TEXT: Record<string, string> = {
  major: 'Major', minor: 'Minor', patch: 'Patch', initial: 'Initial', none: 'No visible change'
}
export const kindText = (kind: string): string => KIND_TEXT[kind] ?? (kind.charAt(0).toUpperCase() + kind.slice(1))

/** Versions made by approving an AI suggestion (shared/prdtool/ai/service.py names them "AI <mode>"). */
export const isAi = (v: VersionRecord): boolean =>
  (v.name ?? '').startsWith('AI ') && (v.message ?? '').startsWith('Applies AI job')

export interface Badge { text: string, kind: string, title: string }

/** What a version is, as labels: its kind, then named / restored / AI / archived when the record says. */
export function badgesOf (v: VersionRecord): Badge[] {
  const badges: Badge[] = [{ text: kindText(v.kind), kind: `kind-${v.kind}`, title: `${kindText(v.kind)} version` }]
  if (v.restored_from) badges.push({ text: 'Restored', kind: 'restored', title: `Restores ${tagOf(v.restored_from)}` })
  if (isAi(v)) badges.push({ text: 'AI', kind: 'ai', title: 'Applies an approved AI suggestion' })
  else if (v.name) badges.push({ text: 'Named', kind: 'named', title: `Saved by hand as “${v.name}”` })
  return badges
}

/** "alice", "alice and bob", "alice, bob and 2 others". */
export function authorsText (authors: string[]): string {
  if (authors.length === 0) return 'unknown author'
  if (authors.length === 1) return authors[0]
  if (authors.length === 2) return `${authors[0]} and ${authors[1]}`
  if (authors.length === 3) return `${authors[0]}, ${authors[1]} and ${authors[2]}`
  return `${authors[0]}, ${authors[1]} and ${authors.length - 2} others`
}

/** "+12 −3 words" (a true minus sign), "+1 word", or "" when nothing counted. */
export function wordCounts (added: number, removed: number): string {
  const parts = [added > 0 ? `+${added}` : '', removed > 0 ? `\u2212${removed}` : ''].filter(Boolean)
  return parts.length === 0 ? '' : `${parts.join(' ')} ${added + removed === 1 ? 'word' : 'words'}`
}

export const NAME_MAX = 100
export const MESSAGE_MAX = 2000

/** Checks of the save form (the API's rules: a name of one line, at most 100 characters; a message up to 2,000). */
export function saveFormError (name: string, message: string): string | null {
  if (/[\x00-\x1f\x7f]/.test(name)) return 'The name must be one line of text.'
  if (name.length > NAME_MAX) return `The name is too long: at most ${NAME_MAX} characters.`
  if (message.length > MESSAGE_MAX) return `The message is too long: at most ${MESSAGE_MAX} characters.`
  return null
}

// ---- git clone --------------------------------------------------------------------------------

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]', '::1'])

/** `git clone <api>/git/<prdId>.git`: the API's origin from /api/config (git is served by the HTTP
 *  API, not by the static site), this page's when both are on this machine or nothing is known. */
export function cloneUrl (apiUrl: string | undefined, page: { origin: string, hostname: string }, prdId: string): string {
  let base = page.origin
  if (apiUrl !== undefined && apiUrl !== '') {
    try {
      const url = new URL(apiUrl)
      if (!(LOOPBACK.has(url.hostname) && LOOPBACK.has(page.hostname))) base = `${url.origin}${url.pathname.replace(/\/$/, '')}`
    } catch { /* keep the page's origin */ }
  }
  return `${base}/git/${encodeURIComponent(prdId)}.git`
}

// ---- diffs ------------------------------------------------------------------------------------

export type LineKind = 'context' | 'add' | 'del'
export interface DiffLine { kind: LineKind, text: string, oldNo?: number, newNo?: number }
export interface Hunk { oldStart: number, oldLines: number, newStart: number, newLines: number, lines: DiffLine[] }
export interface ParsedDiff {
  hunks: Hunk[]
  /** True when the line counts did not add up (a malformed diff): shown as well as it parses. */
  uneven: boolean
}

// Python's str.splitlines() boundaries (the backend splits the Markdown so): splitting the diff the
// same way gives back its lines even when the text holds \r, \u2028 and the like.
const PY_LINE_END = /\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]/g

/** Lines of `text` with their ends, as Python's splitlines(keepends=True). */
export function splitLinesKeepEnds (text: string): string[] {
  const lines: string[] = []
  let start = 0
  for (const match of text.matchAll(PY_LINE_END)) {
    const end = (match.index ?? 0) + match[0].length
    lines.push(text.slice(start, end))
    start = end
  }
  if (start < text.length) lines.push(text.slice(start))
  return lines
}

const stripEnd = (line: string): string => line.replace(/(?:\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029])$/, '')

/** The old text's last line when it does not end with a line break (else ""): see parseUnified. */
export function unterminatedTail (text: string): string {
  const lines = splitLinesKeepEnds(text)
  const last = lines[lines.length - 1] ?? ''
  return stripEnd(last) === last ? last : ''
}

const HUNK_HEADER = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/

/**
 * A unified diff (difflib's, as the API gives it) as hunks of numbered lines.
 *
 * difflib writes a last line without a line break as is, so when the old text does not end with a
 * newline and its last line was changed, that line and the first added one arrive glued together
 * ("-old+new"). The hunk's counts show it; given the old text's unterminated last line (`oldTail`,
 * see unterminatedTail) the two are separated again, otherwise the diff is marked `uneven`.
 */
export function parseUnified (text: string, oldTail = ''): ParsedDiff {
  const raw = splitLinesKeepEnds(text)
  const hunks: Hunk[] = []
  let uneven = false
  let i = 0
  while (i < raw.length && !raw[i].startsWith('@@')) i++ // "--- a" / "+++ b"
  while (i < raw.length) {
    const header = HUNK_HEADER.exec(raw[i])
    i++
    if (header === null) { uneven = true; continue }
    const hunk: Hunk = {
      oldStart: Number(header[1]),
      oldLines: header[2] === undefined ? 1 : Number(header[2]),
      newStart: Number(header[3]),
      newLines: header[4] === undefined ? 1 : Number(header[4]),
      lines: []
    }
    const body: string[] = []
    while (i < raw.length && !raw[i].startsWith('@@')) body.push(raw[i++])
    let oldNo = hunk.oldLines === 0 ? hunk.oldStart + 1 : hunk.oldStart
    let newNo = hunk.newLines === 0 ? hunk.newStart + 1 : hunk.newStart
    let oldLeft = hunk.oldLines
    let newLeft = hunk.newLines
    for (let j = 0; j < body.length; j++) {
      let line = body[j]
      const sign = line.charAt(0)
      if (sign === '\\') continue // "\ No newline at end of file" (git's; difflib writes none)
      if (sign === '-' && oldLeft === 1 && newLeft > body.length - j - 1 && oldTail !== '' &&
          line.startsWith(`-${oldTail}+`)) {
        body.splice(j + 1, 0, line.slice(1 + oldTail.length)) // "-old+new": the "+new" goes next
        line = `-${oldTail}`
      }
      const content = stripEnd(line.slice(1))
      if (sign === '+') {
        hunk.lines.push({ kind: 'add', text: content, newNo: newNo++ })
        newLeft--
      } else if (sign === '-') {
        hunk.lines.push({ kind: 'del', text: content, oldNo: oldNo++ })
        oldLeft--
      } else {
        hunk.lines.push({ kind: 'context', text: sign === ' ' ? content : stripEnd(line), oldNo: oldNo++, newNo: newNo++ })
        oldLeft--
        newLeft--
      }
    }
    if (oldLeft !== 0 || newLeft !== 0) uneven = true
    hunks.push(hunk)
  }
  return { hunks, uneven }
}

/** A run of lines that belong together: unchanged context, or one change (deletions then additions). */
export interface Block { kind: 'context' | 'change', lines: DiffLine[] }

export function blocksOf (lines: DiffLine[]): Block[] {
  const blocks: Block[] = []
  for (const line of lines) {
    const kind = line.kind === 'context' ? 'context' : 'change'
    const last = blocks[blocks.length - 1]
    if (last !== undefined && last.kind === kind) last.lines.push(line)
    else blocks.push({ kind, lines: [line] })
  }
  return blocks
}

export interface SideRow { left?: DiffLine, right?: DiffLine }

/** Side by side: context on both sides; in a change, the k-th deletion beside the k-th addition. */
export function sideBySide (lines: DiffLine[]): SideRow[] {
  const rows: SideRow[] = []
  for (const block of blocksOf(lines)) {
    if (block.kind === 'context') {
      for (const line of block.lines) rows.push({ left: line, right: line })
      continue
    }
    const dels = block.lines.filter(l => l.kind === 'del')
    const adds = block.lines.filter(l => l.kind === 'add')
    for (let k = 0; k < Math.max(dels.length, adds.length); k++) rows.push({ left: dels[k], right: adds[k] })
  }
  return rows
}

/** The part of a changed line that differs from its counterpart: [prefix, changed, suffix]. */
export function intraline (line: string, other: string): [string, string, string] {
  let p = 0
  while (p < line.length && p < other.length && line[p] === other[p]) p++
  let s = 0
  while (s < line.length - p && s < other.length - p && line[line.length - 1 - s] === other[other.length - 1 - s]) s++
  return [line.slice(0, p), line.slice(p, line.length - s), line.slice(line.length - s)]
}

/** For each deletion/addition of a change, its counterpart on the other side (k-th with k-th). */
export function partners (lines: DiffLine[]): Map<DiffLine, DiffLine> {
  const map = new Map<DiffLine, DiffLine>()
  for (const row of sideBySide(lines)) {
    if (row.left !== undefined && row.right !== undefined && row.left !== row.right) {
      map.set(row.left, row.right)
      map.set(row.right, row.left)
    }
  }
  return map
}

const ACTION_TEXT: Record<string, string> = {
  added: 'Added', removed: 'Removed', renamed: 'Renamed', moved: 'Moved', rewritten: 'Rewritten', edited: 'Edited', fixed: 'Fixed'
}

export interface SectionView {
  key: string
  /** The section's heading ("(before the first heading)" for text above it). */
  heading: string
  /** Added, Removed, Renamed, ... */
  actionText: string
  action: string
  /** Structural (added/removed/renamed/moved) or a change of content. */
  structural: boolean
  /** The backend's words, e.g. "Rename 'Goals' to 'Objectives'". */
  summary: string
  counts: string
  diff: ParsedDiff
}

export interface DiffView {
  from: string
  to: string
  kind: string
  kindText: string
  summary: string
  sections: SectionView[]
  whole: ParsedDiff
  /** Whether any part needs the old text's last line to be parsed right (see parseUnified). */
  uneven: boolean
}

/** The diff dialog's model from GET /api/prds/{id}/diff (`oldTail`: see parseUnified). */
export function diffView (json: DiffJson, oldTail = ''): DiffView {
  const sections = json.sections.map((s, i): SectionView => {
    const heading = s.title === '' ? '(before the first heading)' : s.title
    return {
      key: `${i}`,
      heading: s.action === 'renamed' && s.old_title !== null && s.old_title !== s.title ? `${heading} (was ${s.old_title})` : heading,
      action: s.action,
      actionText: ACTION_TEXT[s.action] ?? kindText(s.action),
      structural: ['added', 'removed', 'renamed', 'moved'].includes(s.action),
      summary: s.summary,
      counts: wordCounts(s.words_added, s.words_removed),
      diff: parseUnified(s.diff, oldTail)
    }
  })
  const whole = parseUnified(json.unified, oldTail)
  return {
    from: json.from,
    to: json.to,
    kind: json.kind,
    kindText: kindText(json.kind),
    summary: json.summary,
    sections,
    whole,
    uneven: whole.uneven || sections.some(s => s.diff.uneven)
  }
}

/** Lines added and removed in a parsed diff. */
export function lineCounts (diff: ParsedDiff): { added: number, removed: number } {
  let added = 0
  let removed = 0
  for (const hunk of diff.hunks) {
    for (const line of hunk.lines) {
      if (line.kind === 'add') added++
      else if (line.kind === 'del') removed++
    }
  }
  return { added, removed }
}
