import NookStore
import NookSupport

/// `nook login`: checks credentials against the registry, then saves them.
public enum Login {
    /// Asks `registry` for `/v2/` with the credentials; saves them when it
    /// accepts them. Returns the file written.
    public static func login(registry: String, user: String, secret: String, tlsCA: String?,
                             environment env: RegistryEnvironment) throws(RegistryError) -> String {
        guard ImageName.isDomain(registry) else {
            throw .badReference(registry, reason: "not a registry host name with an optional :port")
        }
        let name = registry == "index.docker.io" ? "docker.io" : registry
        let reference = Reference(registry: name, repository: "", tag: nil, digest: nil)
        let credential = Credential(user: user, secret: secret, source: "the command line")
        let client = RegistryClient(reference: reference, actions: "pull", config: env.config, tlsCA: tlsCA,
                                    credential: credential, retry: RetryPolicy(), cancel: CancelFlag())
        try client.ping()
        try env.credentials.save(user: user, secret: secret, key: name)
        return env.credentials.writePath
    }
}
