// Package mapstore is package store as it was before its entries were
// packed into tables (i15): each bucket's keys in 64 Go maps of key to
// value and version, and a map of expiries. It is kept, unchanged but for
// its name, as the model that store's tests compare the packed layout
// with (store's FuzzLayoutMatchesMaps); only tests import it.
//
// Do not change its behaviour to follow store's: a difference between the
// two is what the tests look for. When store's behaviour changes on
// purpose, change this package the same way, or retire the comparison.
package mapstore
