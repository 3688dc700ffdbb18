// PeerCertificate: the certificate a client presented (in the TLS handshake, or forwarded by a
// trusted ingress proxy), with the chain it sent. Plain data for the auth layer: nothing here
// says whether it is any good; CertificateAuthority::Check (api/cloisterd/certificates.h)
// decides that per request.
//
// A TLS connection captures it once after the handshake and every Request parsed on that
// connection shares it (Request::client_cert). The fingerprint, SHA-256 over the DER of the leaf
// and then of each chain certificate, is computed once here so that a per-request cache can key
// on the content (not on an address, which a later connection may reuse).
//
// Thread-safety: immutable after construction; X509 reference counts are atomic, so the last
// reference may be dropped on any thread.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <array>
#include <cstdint>

#include "log/assert.h"

namespace cloister::api {

class PeerCertificate {
 public:
  using Fingerprint = std::array<uint8_t, 32>;

  // Takes ownership of one reference to leaf (not null) and of chain, the stack and one
  // reference to each of its certificates (null: no chain). On the server side of a TLS session
  // the chain OpenSSL reports does not hold the leaf; the ingress path follows that too.
  PeerCertificate(X509* leaf, STACK_OF(X509)* chain) : leaf_(leaf), chain_(chain) {
    CL_ASSERT(leaf_ != nullptr);
    EVP_MD_CTX* md = EVP_MD_CTX_new();
    CL_ASSERT(md != nullptr && EVP_DigestInit_ex(md, EVP_sha256(), nullptr) == 1);
    AddToDigest(md, leaf_);
    for (int i = 0; chain_ != nullptr && i < sk_X509_num(chain_); ++i) {
      AddToDigest(md, sk_X509_value(chain_, i));
    }
    unsigned int size = 0;
    CL_ASSERT(EVP_DigestFinal_ex(md, fingerprint_.data(), &size) == 1);
    CL_ASSERT(size == fingerprint_.size());
    EVP_MD_CTX_free(md);
  }
  ~PeerCertificate() {
    X509_free(leaf_);
    sk_X509_pop_free(chain_, X509_free);
  }
  PeerCertificate(const PeerCertificate&) = delete;
  PeerCertificate& operator=(const PeerCertificate&) = delete;

  // The client's own certificate; never null. Owned: valid while this object lives.
  X509* leaf() const { return leaf_; }
  // The other certificates it sent (intermediates), without the leaf; may be null or empty.
  STACK_OF(X509)* chain() const { return chain_; }
  const Fingerprint& fingerprint() const { return fingerprint_; }

 private:
  static void AddToDigest(EVP_MD_CTX* md, X509* cert) {
    unsigned char* der = nullptr;
    int size = i2d_X509(cert, &der);
    CL_ASSERT(size > 0);
    // The length first, so that the boundaries between certificates are part of the digest.
    const uint32_t length = static_cast<uint32_t>(size);
    const unsigned char prefix[4] = {static_cast<unsigned char>(length >> 24),
                                     static_cast<unsigned char>(length >> 16),
                                     static_cast<unsigned char>(length >> 8),
                                     static_cast<unsigned char>(length)};
    CL_ASSERT(EVP_DigestUpdate(md, prefix, sizeof(prefix)) == 1);
    CL_ASSERT(EVP_DigestUpdate(md, der, static_cast<size_t>(size)) == 1);
    OPENSSL_free(der);
  }

  X509* leaf_;
  STACK_OF(X509)* chain_;
  Fingerprint fingerprint_{};
};

}  // namespace cloister::api
