// HttpLimits: every bound the HTTP server puts on a client, in one place.
//
// The front door must stay up whatever a client sends or fails to send, so every buffer and every
// wait has a limit. Over a limit the client gets one error response (the Anka envelope, see
// http_types.h) and the connection is closed:
//
//   malformed request (llhttp strict)                      400
//   request head or body not received in time              408
//   body over body_bytes_max (declared or as it arrives)   413
//     (a body streamed to a BodySink is the sink's to bound)
//   request head over header_bytes_max or
//     more than header_count_max header fields             431
//   connections_max connections already open               503 (accepted, answered, closed)
//
// An idle keep-alive connection and a client that does not read its responses are closed
// silently: there is no request to answer.
//
// Figures follow shared/RELIABILITY.md (T13, T14): the CIS-recommended 10 s header deadline, a
// generous body deadline for slow links, and nginx-like idle behaviour.
#pragma once

#include <cstdint>

namespace cloister::api {

struct HttpLimits {
  // Request line plus header fields, counted on the wire, CRLFs included.
  uint32_t header_bytes_max = 16 * 1024;
  // Header fields in one request (a repeated name counts each time).
  uint32_t header_count_max = 100;
  // Decoded request body (after chunked framing is removed), when buffered: a body the handler
  // streams to a BodySink (Handler::StreamBody) is not counted against it.
  uint64_t body_bytes_max = 8 * 1024 * 1024;
  // Connections open at once; one more is accepted, answered 503 and closed.
  uint32_t connections_max = 10'000;
  // Requests parsed but not yet answered on one connection. At the limit the server stops
  // reading that connection until the oldest is answered, so a pipelining client cannot make
  // it buffer without bound.
  uint32_t pipeline_requests_max = 32;

  // The whole request head must arrive within this time of its first byte. The deadline is not
  // reset by each read, so a client sending a byte a second cannot hold a connection. Also the
  // time a new connection may take to send its first byte, and the TLS handshake deadline.
  uint32_t header_timeout_ms = 10'000;
  // The whole body must arrive within this time of the end of the head (or of the
  // "100 Continue" the server sent). For a body streamed to a BodySink, the deadline is instead
  // this long without a body byte: a large upload over a slow link carries on while it moves.
  uint32_t body_timeout_ms = 60'000;
  // A keep-alive connection with no request in progress is closed after this long.
  uint32_t idle_timeout_ms = 60'000;
  // A response that the client does not read within this time (no write progress) closes the
  // connection: a slow reader cannot pin the response buffers.
  uint32_t send_timeout_ms = 60'000;
};

// After the last response on a connection that is being closed (an error or "Connection:
// close"), the server sends FIN and then reads and discards what the client still sends, for at
// most this long, before it closes the socket. Closing with unread input would make the kernel
// send RST, which can destroy the response before the client reads it.
inline constexpr uint32_t kLingerCloseMs = 2'000;
// Bytes discarded in total after an error before the server stops reading altogether.
inline constexpr uint64_t kDiscardBytesMax = 1024 * 1024;
// While more response bytes than this wait to be sent on a connection, the server parses no
// further request from it: a client that pipelines without reading cannot grow the buffers.
inline constexpr uint64_t kWriteBacklogBytesMax = 1024 * 1024;
// A response body from a BodySource (http_types.h) is read in chunks of at most this size, and
// only while the write backlog is under kBodyBacklogBytesMax: a download of any size holds
// about kBodyBacklogBytesMax + kBodyChunkBytes of it in memory. Larger than the request
// pipeline's backlog so that the loop's round trips do not starve a fast reader (a 1 MiB
// backlog of 256 KiB chunks gave 0.7x docker-registry's pull rate on loopback).
inline constexpr uint64_t kBodyChunkBytes = 1024 * 1024;
inline constexpr uint64_t kBodyBacklogBytesMax = 4 * 1024 * 1024;
// A file sent with sendfile(2) over plain TCP: when the socket is full, a watcher waits for it to
// take more. Only if no watcher can be made is a chunk of this size queued the ordinary way, its
// completion telling when the socket takes more (waiting on that chunk's completion cost 13% of
// the pull rate of a 1 GiB blob). A source of unknown length (a followed log, sent chunked) is
// read in pieces of this size too.
inline constexpr uint64_t kBodyProbeBytes = 64 * 1024;
// Connections beyond connections_max that are still answered 503; past this many more, a new
// connection is closed at once without a response, so an overload cannot exhaust descriptors
// through the 503 path itself.
inline constexpr uint32_t kRejectingConnectionsMax = 64;

}  // namespace cloister::api
