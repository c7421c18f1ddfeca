import { describe, expect, it } from 'vitest'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import { sanitizeAwarenessUpdate, sanitizeState } from '../src/peers'
import { userFor } from '../src/presence'

function update (entries: Array<[number, number, unknown]>): Uint8Array {
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, entries.length)
  for (const [client, clock, state] of entries) {
    encoding.writeVarUint(e, client)
    encoding.writeVarUint(e, clock)
    encoding.writeVarString(e, JSON.stringify(state))
  }
  return encoding.toUint8Array(e)
}

function entries (bytes: Uint8Array): Array<[number, number, unknown]> {
  const d = decoding.createDecoder(bytes)
  const out: Array<[number, number, unknown]> = []
  for (let n = decoding.readVarUint(d); n > 0; n--) {
    out.push([decoding.readVarUint(d), decoding.readVarUint(d), JSON.parse(decoding.readVarString(d))])
  }
  return out
}

describe('peer awareness', () => {
  it('never lets a colour that is not plain hex reach the page', () => {
    const evil = { user: { name: 'mallory', color: 'red;background:url(//evil)', colorLight: 'x}body{display:none' }, cursor: { anchor: 1 } }
    expect(sanitizeState(evil)).toEqual({ cursor: { anchor: 1 }, user: userFor('mallory') })
    expect(sanitizeState({ user: { name: 'ann', color: '#123abc', colorLight: '#123abc33' } }))
      .toEqual({ user: { name: 'ann', color: '#123abc', colorLight: '#123abc33' } })
  })

  it('drops a user without a name and keeps removals', () => {
    expect(sanitizeState({ user: { color: '#000000' } })).toEqual({})
    expect(sanitizeState(null)).toBeNull()
    expect(sanitizeState('text')).toEqual({})
  })

  it('rewrites every entry of an awareness update, keeping ids and clocks', () => {
    const out = entries(sanitizeAwarenessUpdate(update([[7, 3, { user: { name: 'eve', color: 'url(x)' } }], [9, 4, null]])))
    expect(out).toEqual([[7, 3, { user: userFor('eve') }], [9, 4, null]])
  })
})
