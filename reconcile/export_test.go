package reconcile

// KeyFingerprint lets the tests find a key's lock-out in the store.
var KeyFingerprint = keyFingerprint
