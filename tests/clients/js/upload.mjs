// Uploads a file to a tus server with tus-js-client under Node, printing one
// JSON line per event on stdout (crates/tusd-rs/tests/clients.rs reads them).
//
//   node upload.mjs <endpoint> <file> <mode> [--chunk-size N] [--url-file PATH]
//                   [--delay-ms N] [--parallel N] [--progress yes]
//
// modes:
//   plain     fs.ReadStream source with a known size, PATCHes of --chunk-size
//   resume    like plain, but the upload URL is kept in --url-file: if the file
//             exists the upload is resumed from it (option `uploadUrl`),
//             otherwise the new URL is written there as soon as it exists
//   deferred  a generic Readable (no path, no size) with uploadLengthDeferred
//   parallel  parallelUploads: --parallel partial uploads, then a final
//             concatenation (tus concatenation extension)
//
// events: {"event":"request",...} before each request, {"event":"response",...}
// after it, {"event":"url"}, {"event":"chunk","offset":N}, {"event":"success"}
// or {"event":"error"} (exit code 1); with --progress yes also
// {"event":"progress","offset":N} as the body of a PATCH goes out.

import { createReadStream, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { PassThrough } from 'node:stream'
import * as tus from 'tus-js-client'

function usage(message) {
  console.error(`upload.mjs: ${message}`)
  console.error(
    'usage: node upload.mjs <endpoint> <file> <plain|resume|deferred|parallel> [--chunk-size N] [--url-file PATH] [--delay-ms N] [--parallel N] [--progress yes]',
  )
  process.exit(2)
}

const [endpoint, file, mode, ...rest] = process.argv.slice(2)
if (!endpoint || !file || !mode) usage('missing arguments')
const opts = { chunkSize: 1024 * 1024, urlFile: null, delayMs: 0, parallel: 2, progress: false }
for (let i = 0; i < rest.length; i += 2) {
  const value = rest[i + 1]
  if (value === undefined) usage(`${rest[i]} needs a value`)
  switch (rest[i]) {
    case '--chunk-size':
      opts.chunkSize = Number(value)
      break
    case '--url-file':
      opts.urlFile = value
      break
    case '--delay-ms':
      opts.delayMs = Number(value)
      break
    case '--progress':
      opts.progress = value === 'yes'
      break
    case '--parallel':
      opts.parallel = Number(value)
      break
    default:
      usage(`unknown option ${rest[i]}`)
  }
}

function emit(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`)
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const options = {
  endpoint,
  chunkSize: opts.chunkSize,
  // Fail fast: a retry would hide a server error from the test.
  retryDelays: [],
  metadata: { filename: file.split('/').pop(), filetype: 'application/octet-stream' },
  // No implicit resuming from a fingerprint store: resuming is explicit here.
  storeFingerprintForResuming: false,
  async onBeforeRequest(req) {
    emit({
      event: 'request',
      method: req.getMethod(),
      url: req.getURL(),
      uploadOffset: req.getHeader('Upload-Offset') ?? null,
      uploadLength: req.getHeader('Upload-Length') ?? null,
      uploadConcat: req.getHeader('Upload-Concat') ?? null,
      uploadDeferLength: req.getHeader('Upload-Defer-Length') ?? null,
    })
    if (opts.delayMs > 0 && req.getMethod() === 'PATCH') await sleep(opts.delayMs)
  },
  onAfterResponse(req, res) {
    emit({
      event: 'response',
      method: req.getMethod(),
      url: req.getURL(),
      status: res.getStatus(),
      uploadOffset: res.getHeader('Upload-Offset') ?? null,
      uploadLength: res.getHeader('Upload-Length') ?? null,
      location: res.getHeader('Location') ?? null,
    })
  },
  onProgress(bytesSent, bytesTotal) {
    if (opts.progress) emit({ event: 'progress', offset: bytesSent, total: bytesTotal })
  },
  onChunkComplete(chunkSize, bytesAccepted, bytesTotal) {
    emit({ event: 'chunk', size: chunkSize, offset: bytesAccepted, total: bytesTotal })
  },
  onError(error) {
    finished = true
    emit({ event: 'error', message: String(error) })
    process.exitCode = 1
  },
}

let source
switch (mode) {
  case 'plain':
    source = createReadStream(file)
    break
  case 'resume':
    if (!opts.urlFile) usage('resume needs --url-file')
    source = createReadStream(file)
    if (existsSync(opts.urlFile)) {
      options.uploadUrl = readFileSync(opts.urlFile, 'utf8').trim()
      emit({ event: 'resuming', url: options.uploadUrl })
    }
    break
  case 'deferred': {
    // A plain Readable: tus-js-client cannot know its size up front.
    const pass = new PassThrough()
    createReadStream(file).pipe(pass)
    source = pass
    options.uploadLengthDeferred = true
    break
  }
  case 'parallel':
    source = createReadStream(file)
    options.parallelUploads = opts.parallel
    break
  default:
    usage(`unknown mode ${mode}`)
}

const upload = new tus.Upload(source, {
  ...options,
  onUploadUrlAvailable() {
    emit({ event: 'url', url: upload.url })
    if (opts.urlFile && !existsSync(opts.urlFile)) writeFileSync(opts.urlFile, `${upload.url}\n`)
  },
  onSuccess() {
    finished = true
    emit({ event: 'success', url: upload.url })
  },
})

// tus-js-client can leave the event loop empty without calling onSuccess or
// onError (e.g. tus-js-client issue #779: a deferred-length stream whose size
// is a multiple of chunkSize). Node then exits quietly; make that a failure.
let finished = false
process.on('beforeExit', () => {
  if (!finished && process.exitCode === undefined) {
    emit({ event: 'stalled', offset: upload._offset ?? null })
    process.exitCode = 3
  }
})
upload.start()
