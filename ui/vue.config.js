// Built with @vue/cli-service 4 (webpack 4), like the other NethServer 8 module UIs.
// Node >= 17 needs NODE_OPTIONS=--openssl-legacy-provider for webpack 4's md4 hashes
// (set by the npm scripts in package.json).
module.exports = {
  publicPath: "./",
  productionSourceMap: false,
  configureWebpack: {
    performance: { hints: false },
    optimization: {
      splitChunks: {
        minSize: 10000,
        maxSize: 250000,
      },
    },
  },
  chainWebpack: (config) => {
    // Always emit the module logo as a file: cluster-admin shows it from its URL.
    config.module
      .rule("images")
      .use("url-loader")
      .loader("url-loader")
      .tap((options) => Object.assign(options, { limit: -1 }));
  },
};
