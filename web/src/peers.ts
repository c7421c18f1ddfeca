// Peers' awareness states are untrusted input: another client (or a server bug) could send any
// JSON, and y-codemirror.next writes `user.color` into CSS of the remote cursor, the presence list
// writes it into an avatar's style. The server replaces `user` with the verified identity (docs/
// protocol.md §3.4); this is the client's own check, so a bad colour or name never reaches the DOM.
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import { userFor } from './presence'

const HEX_COLOR = /^#[0-9a-fA-F]{6}$/
const HEX_COLOR_ALPHA = /^#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?$/
const MAX_NAME = 128

/** A peer's state fit to render: `user` is `{name, color, colorLight}` with colours that are plain hex. */
export function sanitizeState (state: unknown): Record<string, unknown> | null {
  if (state === null || typeof state !== 'object' || Array.isArray(state)) return state === null ? null : {}
  const clean: Record<string, unknown> = { ...(state as Record<string, unknown>) }
  const user = clean.user as { name?: unknown, color?: unknown, colorLight?: unknown } | undefined
  delete clean.user
  if (user !== null && typeof user === 'object' && typeof user.name === 'string' && user.name !== '') {
    const name = user.name.slice(0, MAX_NAME)
    const fallback = userFor(name)
    clean.user = {
      name,
      color: typeof user.color === 'string' && HEX_COLOR.test(user.color) ? user.color : fallback.color,
      colorLight: typeof user.colorLight === 'string' && HEX_COLOR_ALPHA.test(user.colorLight) ? user.colorLight : fallback.colorLight
    }
  }
  return clean
}

/** The same awareness update (y-protocols layout) with every state passed through `sanitizeState`. */
export function sanitizeAwarenessUpdate (update: Uint8Array): Uint8Array {
  const decoder = decoding.createDecoder(update)
  const encoder = encoding.createEncoder()
  const count = decoding.readVarUint(decoder)
  encoding.writeVarUint(encoder, count)
  for (let i = 0; i < count; i++) {
    encoding.writeVarUint(encoder, decoding.readVarUint(decoder))
    encoding.writeVarUint(encoder, decoding.readVarUint(decoder))
    const state = JSON.parse(decoding.readVarString(decoder)) as unknown
    encoding.writeVarString(encoder, JSON.stringify(sanitizeState(state)))
  }
  return encoding.toUint8Array(encoder)
}
