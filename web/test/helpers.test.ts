import { describe, expect, it } from 'vitest'
import { outline, userFor } from '../src/presence'
import { parseRoute, safeNext, loginPath } from '../src/router'
import { matches } from '../src/screens/list'

// api.ts reads sessionStorage when loaded: give the node environment one.
const store = new Map<string, string>()
globalThis.sessionStorage = { getItem: k => store.get(k) ?? null, setItem: (k, v) => { store.set(k, v) }, removeItem: k => { store.delete(k) } } as Storage
const { pickWsUrl, retryAfterMs } = await import('../src/api')

describe('routes', () => {
  it('parses the three routes, and keeps the route first asked for', () => {
    expect(parseRoute('/', '')).toEqual({ name: 'list' })
    expect(parseRoute('/prds/01abc_-Z', '')).toEqual({ name: 'editor', id: '01abc_-Z' })
    expect(parseRoute('/login', '?next=%2Fprds%2Fx1')).toEqual({ name: 'login', next: '/prds/x1' })
    expect(parseRoute('/elsewhere', '')).toEqual({ name: 'not-found' })
    expect(loginPath('/prds/x1?a=1')).toBe('/login?next=%2Fprds%2Fx1%3Fa%3D1')
    expect(loginPath('/')).toBe('/login')
  })

  it('never sends a person to another site after logging in', () => {
    for (const bad of ['//evil.example', 'https://evil.example', '/\\evil.example', 'prds/x', null, '/login?next=/']) {
      expect(safeNext(bad)).toBe('/')
    }
    expect(safeNext('/prds/abc')).toBe('/prds/abc')
  })
})

describe('outline', () => {
  it('lists ATX headings with their offsets, skipping fenced code', () => {
    const md = '# Title\n\nText\n## Goals ##\n```\n# not a heading\n```\n### Deep\n#nope\n'
    expect(outline(md)).toEqual([
      { level: 1, text: 'Title', from: 0 },
      { level: 2, text: 'Goals', from: 14 },
      { level: 3, text: 'Deep', from: md.indexOf('### Deep') }
    ])
  })
})

describe('presence colours', () => {
  it('gives each name a stable colour dark enough for white text', () => {
    expect(userFor('alice')).toEqual(userFor('alice'))
    const luminance = (hex: string): number => {
      const [r, g, b] = [1, 3, 5].map(i => parseInt(hex.slice(i, i + 2), 16) / 255)
        .map(c => c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4)
      return 0.2126 * r + 0.7152 * g + 0.0722 * b
    }
    for (const name of ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi']) {
      const { color, name: shown } = userFor(name)
      expect(shown).toBe(name)
      expect(1.05 / (luminance(color) + 0.05)).toBeGreaterThanOrEqual(4.5)
    }
  })
})

describe('list filter', () => {
  it('matches every typed word, in any case', () => {
    expect(matches('Team Calendar Sync', 'cal sync')).toBe(true)
    expect(matches('Team Calendar Sync', 'CALENDAR')).toBe(true)
    expect(matches('Team Calendar Sync', 'calendar export')).toBe(false)
    expect(matches('anything', '  ')).toBe(true)
  })
})

describe('api helpers', () => {
  it('honours Retry-After in seconds or as a date, within bounds', () => {
    expect(retryAfterMs('2')).toBe(2000)
    expect(retryAfterMs(null)).toBe(1000)
    expect(retryAfterMs('3600')).toBe(30_000)
    expect(retryAfterMs(new Date(10_000).toUTCString(), 5_000)).toBe(5000)
  })

  it("uses this origin's /ws locally, and the configured WebSocket URL in AWS", () => {
    const page = { protocol: 'http:', host: '127.0.0.1:3000', hostname: '127.0.0.1' }
    expect(pickWsUrl('ws://localhost:3000/ws', page)).toBe('ws://127.0.0.1:3000/ws')
    expect(pickWsUrl(undefined, page)).toBe('ws://127.0.0.1:3000/ws')
    const cdn = { protocol: 'https:', host: 'prd.example.com', hostname: 'prd.example.com' }
    expect(pickWsUrl('wss://abc.execute-api.us-east-1.amazonaws.com/prod', cdn)).toBe('wss://abc.execute-api.us-east-1.amazonaws.com/prod')
    expect(pickWsUrl('', cdn)).toBe('wss://prd.example.com/ws')
  })
})
