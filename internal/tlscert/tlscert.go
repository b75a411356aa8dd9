// Package tlscert makes self-signed certificates for trials and tests
// (`wsgate dev --tls-self-signed`, the TLS tests and benchmarks). Production
// certificates come from a CA; nothing here is meant for them.
package tlscert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// DefaultHosts are the names a self-signed certificate covers when none are
// given: the loopback names a trial on one machine uses.
var DefaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// Generate returns a PEM certificate and PEM private key (ECDSA P-256, the
// cheapest key to sign handshakes with) valid for hosts (DNS names or IP
// addresses; default DefaultHosts) from an hour ago until validFor from
// now. The certificate is its own CA, so a client trusts it by adding the
// certificate itself to its roots (curl --cacert, tls.Config.RootCAs).
func Generate(validFor time.Duration, hosts ...string) (certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		hosts = DefaultHosts
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"wsgate self-signed"}, CommonName: hosts[0]},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, // client too: mutual TLS on links
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// Write generates a certificate as Generate does and writes it to
// dir/cert.pem and dir/key.pem (the key readable by the owner only),
// returning the two paths.
func Write(dir string, validFor time.Duration, hosts ...string) (certFile, keyFile string, err error) {
	c, k, err := Generate(validFor, hosts...)
	if err != nil {
		return "", "", fmt.Errorf("tlscert: %w", err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyFile, k, 0o600); err != nil {
		return "", "", fmt.Errorf("tlscert: %w", err)
	}
	if err := os.WriteFile(certFile, c, 0o644); err != nil {
		return "", "", fmt.Errorf("tlscert: %w", err)
	}
	return certFile, keyFile, nil
}

// CAPool reads a PEM file of CA certificates into a pool; a file with no
// certificate in it is an error.
func CAPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", file)
	}
	return pool, nil
}
