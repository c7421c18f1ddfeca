// A tiny DOM builder: h('button', { class: 'x', onclick }, 'text', child).
type Attrs = Record<string, string | number | boolean | null | undefined | ((event: any) => void)>
type Child = Node | string | null | undefined | false

export function h<K extends keyof HTMLElementTagNameMap> (tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue
    if (typeof value === 'function') el.addEventListener(name.replace(/^on/, ''), value)
    else if (value === true) el.setAttribute(name, '')
    else el.setAttribute(name, String(value))
  }
  for (const child of children) if (child !== null && child !== undefined && child !== false) el.append(child)
  return el
}

/** A message in words (errors end up here), announced to screen readers. */
export function notice (text: string, kind: 'error' | 'info' = 'error'): HTMLElement {
  return h('p', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text)
}

export const messageOf = (error: unknown): string =>
  error instanceof TypeError ? 'The server cannot be reached. Check your connection and try again.'
    : error instanceof Error ? error.message : String(error)
