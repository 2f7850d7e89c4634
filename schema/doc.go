// Package schema holds the ent schema definitions of the auth database:
// users, refresh tokens, OTP requests and the e-mail outbox. The data layer in
// ../ent and the Atlas migrations in ../migrations are generated from it.
package schema
