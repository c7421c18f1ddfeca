// Names and colours of the people on a PRD (awareness `user` field, as y-codemirror.next expects).
export interface PresenceUser { name: string, color: string, colorLight: string }

// Dark enough for white text (WCAG AA 4.5:1) — the remote cursor labels are white on these.
const COLORS = ['#1d4ed8', '#b91c1c', '#047857', '#7e22ce', '#a16207', '#0e7490', '#be185d', '#4d7c0f']

export function userFor (username: string): PresenceUser {
  let hash = 0
  for (const ch of username) hash = (hash * 31 + ch.codePointAt(0)!) >>> 0
  const color = COLORS[hash % COLORS.length]
  return { name: username, color, colorLight: `${color}33` }
}

/** Markdown headings (ATX, outside fenced code) with their offsets: the PRD's sections. */
export interface Heading { level: number, text: string, from: number }

export function outline (markdown: string): Heading[] {
  const headings: Heading[] = []
  let fence: string | null = null
  let offset = 0
  for (const line of markdown.split('\n')) {
    const fenceMatch = /^ {0,3}(`{3,}|~{3,})/.exec(line)
    if (fenceMatch !== null) {
      if (fence === null) fence = fenceMatch[1][0]
      else if (fenceMatch[1][0] === fence) fence = null
    } else if (fence === null) {
      const m = /^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$/.exec(line)
      if (m !== null && m[2] !== '') headings.push({ level: m[1].length, text: m[2], from: offset })
    }
    offset += line.length + 1
  }
  return headings
}
