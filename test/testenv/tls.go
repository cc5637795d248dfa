package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// tlsHosts are the names a test server's certificate is valid for.
var tlsHosts = []string{"127.0.0.1", "localhost"}

// writeServerTLS makes a fresh CA, issues a server certificate for
// 127.0.0.1 and localhost, and writes ca.crt, server.crt and server.key
// (all 0600) into dir.
func writeServerTLS(dir, cn string) (ca *CA, caFile, certFile, keyFile string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", "", "", err
	}
	if ca, err = NewCA(cn + "-ca"); err != nil {
		return nil, "", "", "", err
	}
	certPEM, keyPEM, err := ca.Issue(cn, nil, tlsHosts, false)
	if err != nil {
		return nil, "", "", "", err
	}
	caFile = filepath.Join(dir, "ca.crt")
	certFile = filepath.Join(dir, "server.crt")
	keyFile = filepath.Join(dir, "server.key")
	for path, data := range map[string][]byte{caFile: ca.CertPEM, certFile: certPEM, keyFile: keyPEM} {
		if err := writeFile(path, data); err != nil {
			return nil, "", "", "", err
		}
	}
	return ca, caFile, certFile, keyFile, nil
}

// AddTLSMariaDB starts one more MariaDB server that speaks TLS with a
// certificate for 127.0.0.1 issued by a fresh CA, and refuses plaintext TCP
// connections (--require-secure-transport=ON), so a client that connects over
// TCP at all has used TLS. The socket stays usable without TLS.
//
// The server's option file (OptionFile, used by Exec) trusts the CA and
// verifies the server's certificate. RewriteOptionFile drops those lines:
// after a rewrite, pass "--ssl-ca=FILE" (FILE holding the CA's CertPEM) to Exec.
//
// The server is in e.MariaDBs, so Env.Stop stops it.
func (e *Env) AddTLSMariaDB(ctx context.Context, name string) (*MariaDB, *CA, error) {
	ca, caFile, certFile, keyFile, err := writeServerTLS(filepath.Join(e.Dir, name+"-tls"), name)
	if err != nil {
		return nil, nil, err
	}
	m, err := e.AddMariaDB(ctx, name, MariaDBOptions{ExtraArgs: []string{
		"--ssl-ca=" + caFile,
		"--ssl-cert=" + certFile,
		"--ssl-key=" + keyFile,
		"--require-secure-transport=ON",
	}})
	if err != nil {
		return nil, nil, err
	}
	if err := appendTLSClientOptions(m.OptionFile(), caFile); err != nil {
		return nil, nil, err
	}
	// Prove the server is what it claims: TLS works with the CA.
	out, err := m.Exec(ctx, "SHOW SESSION STATUS LIKE 'Ssl_version'")
	if err != nil {
		return nil, nil, fmt.Errorf("TLS connection to %s: %w", name, err)
	}
	if f := strings.Fields(out); len(f) < 2 || !strings.HasPrefix(f[1], "TLS") {
		return nil, nil, fmt.Errorf("%s: the test client's connection is not TLS: %q", name, out)
	}
	return m, ca, nil
}

// appendTLSClientOptions makes the client option file trust caFile and
// verify the server's certificate.
func appendTLSClientOptions(optFile, caFile string) error {
	b, err := os.ReadFile(optFile)
	if err != nil {
		return err
	}
	b = append(b, []byte(fmt.Sprintf("ssl-ca=%s\nssl-verify-server-cert\n", caFile))...)
	return writeFile(optFile, b)
}

// StartS3TLS starts another versitygw S3 server (posix backend) that serves
// HTTPS only, with a certificate for 127.0.0.1 issued by a fresh CA; its
// Endpoint is https://127.0.0.1:PORT. It is ready once a TLS handshake that
// trusts only that CA succeeds.
//
// Env.Stop does not know this server: the caller stops it, e.g.
//
//	t.Cleanup(func() { srv.Process.Stop(5 * time.Second) })
//
// (it is also killed if the test binary dies, as every non-detached process).
func (e *Env) StartS3TLS(ctx context.Context) (*S3Server, *CA, error) {
	bin, err := lookBin(e.BinDir, "versitygw")
	if err != nil {
		return nil, nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, nil, err
	}
	dir := filepath.Join(e.Dir, fmt.Sprintf("s3tls-%d", port))
	ca, _, certFile, keyFile, err := writeServerTLS(filepath.Join(dir, "tls"), "versitygw")
	if err != nil {
		return nil, nil, err
	}
	s := &S3Server{Endpoint: "https://" + hostPort(port), Dir: filepath.Join(dir, "data"), AccessKey: "stashtls", SecretKey: randomPassword()}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, nil, err
	}
	// Credentials go in the environment, never on the command line.
	env := []string{"ROOT_ACCESS_KEY_ID=" + s.AccessKey, "ROOT_SECRET_ACCESS_KEY=" + s.SecretKey}
	args := []string{"--port", hostPort(port), "--cert", certFile, "--key", keyFile, "posix", s.Dir}
	if s.Process, err = start(dir, "versitygw", bin, args, env, false); err != nil {
		return nil, nil, err
	}
	if err := s.Process.waitReady(ctx, 30*time.Second, tlsReady(hostPort(port), ca)); err != nil {
		s.Process.Stop(5 * time.Second)
		return nil, nil, err
	}
	return s, ca, nil
}

// tlsReady completes a TLS handshake with addr, trusting only ca.
func tlsReady(addr string, ca *CA) func(context.Context) error {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return func(ctx context.Context) error {
		d := tls.Dialer{
			NetDialer: &net.Dialer{Timeout: time.Second},
			Config:    &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}
