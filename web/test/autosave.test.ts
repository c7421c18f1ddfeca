import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { AutoSaver, DEFAULT_CONFIG, STATE_TEXT, backoffMs, initialModel, transition, type SyncState } from '../src/autosave'

/** An AutoSaver on fake timers whose "server" acknowledges (or not) on demand. */
function harness (online = true) {
  const log = { states: [] as SyncState[], saveLocal: 0, resend: 0, resync: 0 }
  let unacked = 0
  const saver = new AutoSaver({
    saveLocal: () => { log.saveLocal++ },
    allAcked: () => unacked === 0,
    resend: () => { log.resend++ },
    resync: () => { log.resync++ },
    onState: state => { log.states.push(state) }
  }, DEFAULT_CONFIG, { setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: h => clearTimeout(h) }, online)
  return {
    saver,
    log,
    /** A keystroke: sent at once, waiting for its ack. */
    type: () => { unacked++; saver.dispatch({ type: 'edit' }) },
    ackAll: () => { unacked = 0; saver.dispatch({ type: 'acked' }) },
    setUnacked: (n: number) => { unacked = n }
  }
}

beforeEach(() => { vi.useFakeTimers() })
afterEach(() => { vi.useRealTimers() })

describe('transition (pure)', () => {
  it('starts offline until the first sync, and saved when opened online with nothing to save', () => {
    expect(initialModel().state).toBe('offline')
    expect(initialModel(true).state).toBe('saved')
  })

  it('names every state in words', () => {
    expect(STATE_TEXT).toEqual({ saved: 'Saved', saving: 'Saving…', unsynced: 'Unsynced', offline: 'Offline', error: 'Not saved — retry' })
  })

  it('never says saved while disconnected, whatever happens', () => {
    let model = transition(initialModel(true), { type: 'disconnected' })[0]
    for (const type of ['edit', 'acked', 'debounceElapsed', 'failed', 'backoffElapsed', 'retryClicked'] as const) {
      model = transition(model, { type })[0]
      expect(model.state).toBe('offline')
    }
  })

  it('backs off 1, 2, 4, 8, 16 s, capped at the maximum', () => {
    expect([1, 2, 3, 4, 5].map(n => backoffMs(n))).toEqual([1000, 2000, 4000, 8000, 16000])
    expect(backoffMs(12)).toBe(DEFAULT_CONFIG.backoffMaxMs)
  })
})

describe('AutoSaver', () => {
  it('debounces: unsynced while typing, saving 2 s after the last keystroke, saved once acknowledged', async () => {
    const { saver, log, type, ackAll } = harness()
    type()
    expect(saver.state).toBe('unsynced')
    await vi.advanceTimersByTimeAsync(1500)
    type() // restarts the 2 s
    await vi.advanceTimersByTimeAsync(1999)
    expect(saver.state).toBe('unsynced')
    expect(log.saveLocal).toBe(0)
    await vi.advanceTimersByTimeAsync(1)
    expect(saver.state).toBe('saving')
    expect(log.saveLocal).toBe(1)
    ackAll()
    expect(saver.state).toBe('saved')
    expect(log.states).toEqual(['unsynced', 'saving', 'saved'])
  })

  it('goes straight to saved at the debounce when the acks arrived while typing', async () => {
    const { saver, log, type, ackAll } = harness()
    type()
    ackAll() // acknowledged, but the person is still typing: stays unsynced
    expect(saver.state).toBe('unsynced')
    await vi.advanceTimersByTimeAsync(2000)
    expect(saver.state).toBe('saved')
    expect(log.states).toEqual(['unsynced', 'saving', 'saved'])
  })

  it('retries a failed save with exponential backoff, at most 5 times, then shows error', async () => {
    const { saver, log, type } = harness()
    type()
    await vi.advanceTimersByTimeAsync(2000) // saving; no ack ever comes
    const resendTimes: number[] = []
    const start = Date.now()
    for (let i = 0; i < 1000 && saver.state !== 'error'; i++) {
      const before = log.resend
      await vi.advanceTimersByTimeAsync(100)
      if (log.resend > before) resendTimes.push(Date.now() - start)
    }
    expect(saver.state).toBe('error')
    expect(log.resend).toBe(5)
    // ack timeout 5 s, then 1 s backoff; each later retry waits 5 s + twice the previous backoff
    expect(resendTimes).toEqual([6000, 13000, 22000, 35000, 56000])
    await vi.advanceTimersByTimeAsync(120_000)
    expect(log.resend).toBe(5) // no sixth retry
    expect(saver.state).toBe('error')
  })

  it('counts a refused update as a failure, and an ack during the backoff recovers', async () => {
    const { saver, log, type, ackAll } = harness()
    type()
    await vi.advanceTimersByTimeAsync(2000)
    saver.dispatch({ type: 'failed' })
    expect(saver.model.failures).toBe(1)
    expect(saver.state).toBe('saving')
    ackAll()
    expect(saver.state).toBe('saved')
    expect(saver.model.failures).toBe(0)
    await vi.advanceTimersByTimeAsync(60_000)
    expect(log.resend).toBe(0) // the backoff timer was cancelled
  })

  it('counts only consecutive failures: an ack while typing clears them and the pending retry', async () => {
    const { saver, log, type, ackAll } = harness()
    type()
    for (let i = 0; i < 4; i++) saver.dispatch({ type: 'failed' }) // e.g. frames dropped by the rate limit
    expect(saver.model.failures).toBe(4)
    type()
    ackAll() // the resend got through
    expect(saver.model.failures).toBe(0)
    expect(saver.state).toBe('unsynced')
    await vi.advanceTimersByTimeAsync(60_000)
    expect(log.resend).toBe(0)
    expect(saver.state).toBe('saved')
  })

  it('recovers from error through the retry control (a full resync)', async () => {
    const { saver, log, type, ackAll } = harness()
    type()
    await vi.advanceTimersByTimeAsync(2000)
    for (let i = 0; i < 6; i++) saver.dispatch({ type: 'failed' })
    expect(saver.state).toBe('error')
    type() // typing does not hide the error
    expect(saver.state).toBe('error')
    saver.dispatch({ type: 'retryClicked' })
    expect(log.resync).toBe(1)
    expect(saver.state).toBe('saving')
    ackAll()
    await vi.advanceTimersByTimeAsync(2000) // the keystroke's debounce
    expect(saver.state).toBe('saved')
  })

  it('is offline while disconnected, and saved after reconnecting once the resync is acknowledged', async () => {
    const { saver, log, type, ackAll, setUnacked } = harness()
    saver.dispatch({ type: 'disconnected' })
    expect(saver.state).toBe('offline')
    type()
    await vi.advanceTimersByTimeAsync(2000)
    expect(saver.state).toBe('offline')
    expect(log.saveLocal).toBe(1) // the local copy is still saved
    setUnacked(1) // the resync's step 2 is in flight
    saver.dispatch({ type: 'connected' })
    expect(saver.state).toBe('saving')
    ackAll()
    expect(saver.state).toBe('saved')
  })

  it('a first sync with nothing unacknowledged is saved at once', () => {
    const { saver } = harness(false)
    expect(saver.state).toBe('offline')
    saver.dispatch({ type: 'connected' })
    expect(saver.state).toBe('saved')
  })

  it('stop() cancels every timer', async () => {
    const { saver, log, type } = harness()
    type()
    saver.stop()
    await vi.advanceTimersByTimeAsync(60_000)
    expect(log.saveLocal).toBe(0)
    expect(saver.state).toBe('unsynced')
  })
})
