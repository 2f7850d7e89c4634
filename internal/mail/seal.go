package mail

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
)

// SealKeySize is the size of a Sealer's key in bytes (AES-256).
const SealKeySize = 32

// ErrKeyChanged reports a payload sealed under another key: the secret the
// key is derived from was rotated since the message was queued. Retrying
// cannot open it.
var ErrKeyChanged = errors.New("payload cannot be decrypted: the key changed (it was sealed under another secret)")

// ErrPayloadDamaged reports a payload that does not open under the key it
// names: it was altered, or copied from another message.
var ErrPayloadDamaged = errors.New("payload cannot be decrypted: it is damaged or belongs to another message")

// A sealed payload is
//
//	version (1 byte) | key id (4 bytes) | nonce (12 bytes) | ciphertext and tag
//
// The key id, the first bytes of the key's SHA-256, tells a payload sealed
// under another key from a damaged one; it reveals nothing of the key. The
// version, the key id and the message's id are the additional
// authenticated data.
const (
	sealVersion   byte = 1
	sealKeyIDSize      = 4
	sealHeader         = 1 + sealKeyIDSize
)

// Sealer encrypts the template data of outbox messages, which may hold a
// code, so that the outbox table never holds it in clear: AES-256-GCM with
// a random nonce per message, bound to the message's id (a payload moved
// to another row does not open).
type Sealer struct {
	aead  cipher.AEAD
	keyID [sealKeyIDSize]byte
}

// NewSealer returns a Sealer with key, which must be SealKeySize bytes.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != SealKeySize {
		return nil, fmt.Errorf("mail: seal key must be %d bytes, not %d", SealKeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("mail: seal key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("mail: seal key: %w", err)
	}
	s := &Sealer{aead: aead}
	sum := sha256.Sum256(key)
	copy(s.keyID[:], sum[:])
	return s, nil
}

// Seal encrypts data for the message whose id is id.
func (s *Sealer) Seal(id uuid.UUID, data map[string]string) ([]byte, error) {
	plain, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("mail: seal: %w", err)
	}
	out := make([]byte, sealHeader+s.aead.NonceSize(), sealHeader+s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	out[0] = sealVersion
	copy(out[1:sealHeader], s.keyID[:])
	nonce := out[sealHeader:]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("mail: seal: %w", err)
	}
	return s.aead.Seal(out, nonce, plain, s.additional(out[:sealHeader], id)), nil
}

// Open decrypts a payload Seal made for the message whose id is id. It
// fails with ErrKeyChanged when the payload was sealed under another key,
// and with ErrPayloadDamaged when it does not open otherwise; the errors
// hold nothing of the payload.
func (s *Sealer) Open(id uuid.UUID, sealed []byte) (map[string]string, error) {
	n := s.aead.NonceSize()
	if len(sealed) < sealHeader+n+s.aead.Overhead() || sealed[0] != sealVersion {
		return nil, ErrPayloadDamaged
	}
	if [sealKeyIDSize]byte(sealed[1:sealHeader]) != s.keyID {
		return nil, ErrKeyChanged
	}
	plain, err := s.aead.Open(nil, sealed[sealHeader:sealHeader+n], sealed[sealHeader+n:], s.additional(sealed[:sealHeader], id))
	if err != nil {
		return nil, ErrPayloadDamaged
	}
	var data map[string]string
	if err := json.Unmarshal(plain, &data); err != nil {
		return nil, ErrPayloadDamaged
	}
	return data, nil
}

// additional is the additional authenticated data of a payload: its
// header and the message's id.
func (s *Sealer) additional(header []byte, id uuid.UUID) []byte {
	return append(append(make([]byte, 0, len(header)+len(id)), header...), id[:]...)
}
